"""Unit tests of the hccn_tool and hccn.conf parsers against every fixture under tests/unit/fixtures/hccn_tool."""

from __future__ import annotations

from pathlib import Path

import pytest

from ansible_collections.ascend_ops.vllm.plugins.module_utils import _hccn as hccn
from ansible_collections.ascend_ops.vllm.plugins.module_utils._hccn import ParseError

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "hccn_tool"
MASK24 = "255.255.255.0"


def ping(device, address, times, sent=3, loss=0.0, seqs=None, avg=None):
    return {"device": device, "source": None, "address": address, "seqs": seqs if seqs is not None else [0, 1, 2],
            "sent": sent, "received": len(times), "loss_pct": loss, "times_ms": times, "avg_ms": avg}


EXPECTED = {
    "link_up.txt": (hccn.parse_link, "UP"),
    "link_down.txt": (hccn.parse_link, "DOWN"),
    "net_health_success.txt": (hccn.parse_net_health, "Success"),
    "net_health_init.txt": (hccn.parse_net_health, "Init"),
    "net_health_fault.txt": (hccn.parse_net_health, "Fault"),
    "ip_loop_8.txt": (hccn.parse_ip_records, [{"ipaddr": f"11.12.165.{80 + i}", "netmask": MASK24} for i in range(8)]),
    "ip_single.txt": (hccn.parse_ip, {"ipaddr": "29.1.137.205", "netmask": "255.255.0.0"}),
    "ip_no_ipconf.txt": (hccn.parse_ip, None),
    "netdetect.txt": (hccn.parse_netdetect, "11.12.165.1"),
    "netdetect_addr.txt": (hccn.parse_netdetect, "29.1.0.1"),
    "gateway_2dev.txt": (hccn.parse_gateway, [{"gateway": "11.12.165.1", "iface": "eth0"},
                                              {"gateway": "11.12.165.1", "iface": "eth1"}]),
    "gateway_single.txt": (hccn.parse_gateway, [{"gateway": "29.1.0.1", "iface": "eth3"}]),
    "tls_switch_2dev.txt": (hccn.parse_tls_records, [
        {"dev_id": 0, "switch": 0, "preconfigured": 1, "alarm_threshold_days": 60},
        {"dev_id": 1, "switch": 0, "preconfigured": 1, "alarm_threshold_days": 60}]),
    "tls_enabled.txt": (hccn.parse_tls, {"dev_id": 3, "switch": 1, "preconfigured": 0, "alarm_threshold_days": 30}),
    "lldp_full.txt": (hccn.parse_lldp, {
        "chassis_mac": None, "port_ifname": "400GE1/1/20:2", "mgmt_address": "26.xx.xx.xx", "max_frame_size": 9216,
        "system_description": "Versatile Routing Platform Software\n"
                              "VRP (R) software, Version 8.211 (DX511 V200R021C10SPC600)\nHuarong DX511",
        "tlvs": ["Chassis ID", "End of LLDPDU", "Management Address", "Maximum Frame Size", "Port ID",
                 "System Capabilities", "System Description"]}),
    "lldp_port_desc.txt": (hccn.parse_lldp, {
        "chassis_mac": "38:4c:4f:12:ab:cd", "port_ifname": "400GE1/1/5:1", "mgmt_address": "10.20.0.1",
        "max_frame_size": 9600, "system_description": "Huawei YunShan OS",
        "tlvs": ["Chassis ID", "End of LLDPDU", "Management Address", "Maximum Frame Size", "Port Description",
                 "Port ID", "System Description", "System Name", "Time To Live"]}),
    "lldp_ifname_loop_8.txt": (hccn.parse_lldp_ifnames, [f"400GE1/{s}/5:{p}" for s in range(1, 5) for p in (1, 2)]),
    "vnic_a3.txt": (hccn.parse_vnic, {"link": "UP", "ipaddr": "192.168.2.199", "netmask": MASK24}),
    "vnic_a3_down.txt": (hccn.parse_vnic, {"link": "DOWN", "ipaddr": "192.168.2.200", "netmask": MASK24}),
    "ping_single.txt": (hccn.parse_ping, ping(3, "29.1.137.205", [1.418, 0.034, 0.04], avg=0.497333)),
    "ping_success_2dev.txt": (hccn.parse_ping_records, [
        ping(0, "11.12.165.80", [0.114, 0.067, 0.063], avg=0.081333),
        ping(1, "11.12.165.80", [0.149, 0.066, 0.064], avg=0.093)]),
    "ping_loss_typo_seq.txt": (hccn.parse_ping, ping(5, "29.1.170.143", [0.118, 0.071], loss=33.33, seqs=[0, 2],
                                                     avg=0.0945)),
    "ping_total_loss.txt": (hccn.parse_ping, ping(2, "29.1.9.9", [], loss=100.0, seqs=[], avg=None)),
    "hccn.conf": (hccn.parse_hccn_conf, {
        0: {"address": "29.1.137.205", "netmask": "255.255.0.0", "netdetect": "29.1.0.1", "gateway": "29.1.0.1",
            "send_arp_status": "1"},
        7: {"address": "29.1.170.143", "netmask": "255.255.0.0", "netdetect": "29.1.0.1", "gateway": "29.1.0.1",
            "send_arp_status": "1"}}),
    "hccn_comments.conf": (hccn.parse_hccn_conf, {
        0: {"address": "29.1.137.205", "netmask": "255.255.0.0"},
        1: {"address": "29.1.137.206", "netmask": "255.255.0.0", "netdetect": "29.1.0.1", "gateway": "29.1.0.1",
            "tls_enable": "1"}}),
}


def test_every_fixture_has_expectations():
    assert {path.name for path in FIXTURES.iterdir()} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_fixture(name):
    parser, expected = EXPECTED[name]
    assert parser((FIXTURES / name).read_text()) == expected


@pytest.mark.parametrize("parser, text, lineno, quoted", [
    (hccn.parse_link, "link status: UNKNOWN\n", 1, "link status: UNKNOWN"),
    (hccn.parse_link, "link status: UP\nlink status: UP\n", 2, "link status: UP"),
    (hccn.parse_link, "hccn_tool: device 9 is not exist\n", 1, "device 9 is not exist"),
    (hccn.parse_net_health, "net health status: Fine\n", 1, "Fine"),
    (hccn.parse_ip, "ipaddr:11.12.165.80\nnetmask:255.255.255.0\nipaddr:11.12.165.81\nnetmask:255.255.255.0\n",
     0, ""),
    (hccn.parse_ip, "netmask:255.255.255.0\n", 1, "netmask:255.255.255.0"),
    (hccn.parse_ip, "ipaddr:11.12.165.80\n", 1, "ipaddr:11.12.165.80"),
    (hccn.parse_ip, "ipaddr:11.12.165.80\nGet ipconf failed\n", 2, "Get ipconf failed"),
    (hccn.parse_netdetect, "netdetect address:\n", 1, "netdetect address:"),
    (hccn.parse_gateway, "default gateway:11.12.165.1, Iface:eth0\ndefault gw 1.2.3.4\n", 2, "default gw 1.2.3.4"),
    (hccn.parse_tls_records, "dev_id:0, tls switch[2](0:disable, 1:enable), tls preconfigured[1](0:non-preset, "
     "1:preset), tls alarm time threshold[60]days\n", 1, "tls switch[2]"),
    (hccn.parse_tls, (FIXTURES / "tls_switch_2dev.txt").read_text(), 0, ""),
    (hccn.parse_vnic, "vnic link status: UP\nvnic netmask: 255.255.255.0\nvnic ipaddr: 192.168.2.199\n", 2,
     "vnic netmask"),
    (hccn.parse_vnic, "vnic link status: UP\n", 0, ""),
    (hccn.parse_lldp, "Chassis MAC 01\nPort ID TLV\n", 1, "Chassis MAC 01"),
    (hccn.parse_lldp, "Port ID TLV\n\tthe port\n", 2, "the port"),
    (hccn.parse_lldp, "Maximum Frame Size TLV\n\tjumbo\n", 2, "jumbo"),
    (hccn.parse_lldp_ifnames, "\tIfname: 400GE1/1/5:1\n\tPortdesc: x\n", 2, "Portdesc: x"),
    (hccn.parse_ping, "device 0 PING 11.12.165.80\nrecv seq=0,time=0.1ms\nrecv seq=1 timeout\n", 3,
     "recv seq=1 timeout"),
    (hccn.parse_ping, "device 0 PING 11.12.165.80\nrecv seq=0,time=0.1ms\n", 1, "device 0 PING"),
    (hccn.parse_ping, "device 0 PING 11.12.165.80\nrecv seq=0,time=0.1ms\n"
     "3 packets transmitted, 3 received, 0.00% packet loss\n", 3, "3 received"),
    (hccn.parse_ping, "recv seq=0,time=0.1ms\n", 1, "recv seq=0"),
    (hccn.parse_ping, (FIXTURES / "ping_success_2dev.txt").read_text(), 0, ""),
    (hccn.parse_hccn_conf, "address_0=29.1.137.205\naddress=1.2.3.4\n", 2, "address=1.2.3.4"),
    (hccn.parse_hccn_conf, "address_0=29.1.137.205\naddress_0=29.1.137.206\n", 2, "address_0=29.1.137.206"),
])
def test_malformed_raises_with_line(parser, text, lineno, quoted):
    with pytest.raises(ParseError) as exc:
        parser(text)
    assert exc.value.lineno == lineno
    if lineno:
        assert exc.value.line == text.splitlines()[lineno - 1]
        assert f"at line {lineno}: " in str(exc.value) and quoted in str(exc.value)


@pytest.mark.parametrize("parser", [hccn.parse_link, hccn.parse_net_health, hccn.parse_ip, hccn.parse_netdetect,
                                    hccn.parse_gateway, hccn.parse_tls, hccn.parse_lldp, hccn.parse_lldp_ifnames,
                                    hccn.parse_vnic, hccn.parse_ping])
def test_empty_output_is_an_error(parser):
    with pytest.raises(ParseError, match="empty|expected 3 lines"):
        parser("\n  \n")


def test_ping_with_source_header_of_newer_tools():
    text = ("device 4 dev eth4 PING 29.1.137.209 to 29.1.170.143\nrecv seq=0,time=0.5ms\n"
            "1 packets transmitted, 1 received, 0.00% packet loss\n")
    result = hccn.parse_ping(text)
    assert (result["device"], result["source"], result["address"], result["avg_ms"]) == (4, "29.1.137.209",
                                                                                         "29.1.170.143", 0.5)


def test_hccn_conf_empty_file_is_empty_mapping():
    assert hccn.parse_hccn_conf("# nothing configured yet\n") == {}
