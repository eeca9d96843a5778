#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target into tests/fuzz/corpus/<target>/.

Each seed is a small valid input in the target's format (see the comment at the top
of each fuzz_*.c), so the fuzzer starts from inputs that reach deep into the code.
Run again after changing a format; files are named by content, so reruns are stable.
Regression inputs (crashes found and fixed) live next to the seeds as regress-*.
"""
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET = "iqn.2026-11.io.rodstore:fuzz"


def put(target, data, name=None):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = name or "seed-" + hashlib.sha1(data).hexdigest()[:12]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def be16(v):
    return struct.pack(">H", v)


def be32(v):
    return struct.pack(">I", v)


def be64(v):
    return struct.pack(">Q", v)


def pad4(b):
    return b + b"\0" * ((4 - len(b) % 4) % 4)


def text(pairs):
    return b"".join(k.encode() + b"=" + v.encode() + b"\0" for k, v in pairs)


# ---- iSCSI PDUs -------------------------------------------------------------------

def bhs(op, flags, data_len=0, itt=0, rest=b""):
    b = bytearray(48)
    b[0] = op
    b[1] = flags
    b[5:8] = struct.pack(">I", data_len)[1:]
    b[16:20] = be32(itt)
    b[20:20 + len(rest)] = rest
    return bytes(b)


def login_pdu(keys, csg=1, nsg=3, transit=True, isid=b"\x80\x12\x34\x56\x78\x9a", tsih=0, itt=1, cmdsn=0):
    t = text(keys)
    b = bytearray(bhs(0x43, (0x80 if transit else 0) | csg << 2 | nsg, len(t), itt))
    b[8:14] = isid
    b[14:16] = be16(tsih)
    b[24:28] = be32(cmdsn)
    return bytes(b) + pad4(t)


def scsi_cmd(itt, cmdsn, cdb, read=False, write=False, edtl=0, data=b"", final=True):
    b = bytearray(48)
    b[0] = 0x01
    b[1] = (0x80 if final else 0) | (0x40 if read else 0) | (0x20 if write else 0) | 1
    b[5:8] = struct.pack(">I", len(data))[1:]
    b[16:20] = be32(itt)
    b[20:24] = be32(edtl)
    b[24:28] = be32(cmdsn)
    b[28:32] = be32(0)
    b[32:32 + len(cdb)] = cdb
    return bytes(b) + pad4(data)


def data_out(itt, ttt, datasn, offset, data, final=True):
    b = bytearray(48)
    b[0] = 0x05
    b[1] = 0x80 if final else 0
    b[5:8] = struct.pack(">I", len(data))[1:]
    b[16:20] = be32(itt)
    b[20:24] = be32(ttt)
    b[36:40] = be32(datasn)
    b[40:44] = be32(offset)
    return bytes(b) + pad4(data)


def cdb16(*parts):
    c = b"".join(parts)
    return c + b"\0" * (16 - len(c))


def iscsi_seeds():
    normal = [("InitiatorName", "iqn.2026-11.fuzz:ini"), ("TargetName", TARGET),
              ("SessionType", "Normal"), ("HeaderDigest", "None"), ("DataDigest", "None"),
              ("MaxRecvDataSegmentLength", "65536"), ("InitialR2T", "Yes"),
              ("ImmediateData", "Yes")]
    tur = cdb16(b"\x00")
    inq = cdb16(b"\x12\x00\x00", be16(255))
    w10 = cdb16(b"\x2a\x00", be32(16), b"\x00", be16(2))
    r10 = cdb16(b"\x28\x00", be32(16), b"\x00", be16(2))
    payload = bytes(range(256)) * 4
    logout = bhs(0x46, 0x80, 0, 0x99, b"\0" * 4 + be32(6))
    nop = bytearray(bhs(0x40, 0x80, 4, 0x55))
    nop[20:24] = be32(0xffffffff)
    nop = bytes(nop) + b"ping"
    # flag byte 1: the harness puts its own login first (CmdSN starts at 0)
    put("fuzz_iscsi_session", b"\x01" + scsi_cmd(1, 0, tur) + scsi_cmd(2, 1, inq, read=True, edtl=255)
        + scsi_cmd(3, 2, w10, write=True, edtl=1024, data=payload) + scsi_cmd(4, 3, r10, read=True, edtl=1024)
        + logout[:24] + be32(4) + logout[28:])
    # write through R2T: no immediate data, then a Data-Out answering the R2T (TTT guessed 0)
    put("fuzz_iscsi_session", b"\x01" + scsi_cmd(1, 0, tur) + scsi_cmd(2, 1, w10, write=True, edtl=1024)
        + data_out(2, 0, 0, 0, payload))
    put("fuzz_iscsi_session", b"\x01" + bytes(nop))
    # TMF: ABORT TASK, LUN RESET
    tmf = bytearray(bhs(0x42, 0x80 | 1, 0, 0x70))
    tmf[20:24] = be32(5)
    put("fuzz_iscsi_session", b"\x01" + scsi_cmd(1, 0, tur) + bytes(tmf))
    tmf2 = bytearray(bhs(0x42, 0x80 | 5, 0, 0x71))
    put("fuzz_iscsi_session", b"\x01" + bytes(tmf2) + scsi_cmd(1, 0, tur))
    # text request: SendTargets in a normal session
    put("fuzz_iscsi_session", b"\x01" + bhs(0x44, 0x80, 16, 0x33, be32(0xffffffff)) + b"SendTargets=All\0")
    # our own logins: normal in one step, with digests, discovery + SendTargets, CHAP start,
    # security stage then operational, unknown host, two-PDU text with C bit
    put("fuzz_iscsi_session", b"\x00" + login_pdu(normal) + scsi_cmd(1, 0, tur) + scsi_cmd(2, 1, inq, read=True, edtl=255))
    dig = [kv if kv[0] not in ("HeaderDigest", "DataDigest") else (kv[0], "CRC32C,None") for kv in normal]
    put("fuzz_iscsi_session", b"\x00" + login_pdu(dig))
    disc = [("InitiatorName", "iqn.2026-11.fuzz:ini"), ("SessionType", "Discovery"),
            ("HeaderDigest", "None"), ("DataDigest", "None")]
    put("fuzz_iscsi_session", b"\x00" + login_pdu(disc) + bhs(0x44, 0x80, 16, 0x33, be32(0xffffffff)) + b"SendTargets=All\0")
    chap = [("InitiatorName", "iqn.2026-11.fuzz:chap"), ("TargetName", TARGET),
            ("SessionType", "Normal"), ("AuthMethod", "CHAP,None")]
    put("fuzz_iscsi_session", b"\x00" + login_pdu(chap, csg=0, nsg=0, transit=False)
        + login_pdu([("CHAP_A", "5")], csg=0, nsg=0, transit=False)
        + login_pdu([("CHAP_N", "fuzz"), ("CHAP_R", "0x" + "00" * 16)], csg=0, nsg=1))
    mutual = [("InitiatorName", "iqn.2026-11.fuzz:mutual"), ("TargetName", TARGET),
              ("SessionType", "Normal"), ("AuthMethod", "CHAP")]
    put("fuzz_iscsi_session", b"\x00" + login_pdu(mutual, csg=0, nsg=0, transit=False)
        + login_pdu([("CHAP_A", "5")], csg=0, nsg=0, transit=False)
        + login_pdu([("CHAP_N", "fuzz"), ("CHAP_R", "0x" + "11" * 16), ("CHAP_I", "7"),
                     ("CHAP_C", "0x" + "22" * 16)], csg=0, nsg=1))
    sec = [("InitiatorName", "iqn.2026-11.fuzz:ini"), ("TargetName", TARGET),
           ("SessionType", "Normal"), ("AuthMethod", "None")]
    put("fuzz_iscsi_session", b"\x00" + login_pdu(sec, csg=0, nsg=1)
        + login_pdu([("MaxRecvDataSegmentLength", "8192"), ("MaxBurstLength", "16384"),
                     ("FirstBurstLength", "4096"), ("ErrorRecoveryLevel", "0")], csg=1, nsg=3))
    put("fuzz_iscsi_session", b"\x00" + login_pdu([("InitiatorName", "iqn.2026-11.fuzz:nohost"),
                                                   ("TargetName", TARGET)]))
    half = text(normal)
    a, b = half[:40], half[40:]
    p1 = bytearray(bhs(0x43, 0x40 | 1 << 2 | 3, len(a), 1))
    p1[8:14] = b"\x80\x12\x34\x56\x78\x9a"
    p2 = bytearray(bhs(0x43, 0x80 | 1 << 2 | 3, len(b), 1))
    p2[8:14] = b"\x80\x12\x34\x56\x78\x9a"
    put("fuzz_iscsi_session", b"\x00" + bytes(p1) + pad4(a) + bytes(p2) + pad4(b))

    # BHS checker: max_data then headers of every initiator opcode
    hdrs = [bhs(0x40, 0x80), bhs(0x01, 0xa1, 512), bhs(0x42, 0x81), bhs(0x43, 0x87, 100),
            bhs(0x04, 0x80, 20), bhs(0x05, 0x80, 4096), bhs(0x06, 0x80), bhs(0x10, 0x80),
            bhs(0x1c, 0x80)]
    put("fuzz_iscsi_pdu", be32(8192) + b"".join(hdrs))
    put("fuzz_iscsi_pdu", be32(262144) + bhs(0x01, 0xc1, 0, 0, b"\0" * 12) + bhs(0x41, 0x80, 262144))
    ahs = bytearray(bhs(0x01, 0xa1, 0))
    ahs[4] = 5
    put("fuzz_iscsi_pdu", be32(8192) + bytes(ahs))

    # key negotiation
    put("fuzz_iscsi_keys", b"\x00" + text(normal + [("MaxBurstLength", "1048576"), ("FirstBurstLength", "262144"),
                                                     ("MaxOutstandingR2T", "4"), ("DefaultTime2Wait", "0"),
                                                     ("DefaultTime2Retain", "0"), ("ErrorRecoveryLevel", "2"),
                                                     ("DataPDUInOrder", "No"), ("DataSequenceInOrder", "No"),
                                                     ("iSCSIProtocolLevel", "1"), ("TaskReporting", "RFC3720,ResponseFence")]))
    put("fuzz_iscsi_keys", b"\x01" + text(disc + [("MaxRecvDataSegmentLength", "0x2000"), ("IFMarker", "No"),
                                                  ("OFMarkInt", "1~65535"), ("X-com.example.Key", "1")]))
    put("fuzz_iscsi_keys", b"\x02" + text([("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C"),
                                           ("MaxConnections", "8"), ("TargetAlias", "x")]))
    put("fuzz_iscsi_keys", b"\x00" + text([("CHAP_A", "5"), ("CHAP_N", "fuzz"), ("CHAP_I", "1"),
                                           ("CHAP_R", "0x" + "a5" * 16), ("CHAP_C", "0bAAECAwQFBgcICQoLDA0ODw==")]))
    put("fuzz_iscsi_keys", b"\x00" + text([("MaxBurstLength", "512"), ("FirstBurstLength", "16777215"),
                                           ("ImmediateData", "No"), ("InitialR2T", "No")]))


# ---- SCSI --------------------------------------------------------------------------

def cmd(cdb, lun=0, kind=0, reset=False, in_cap=0, out=b"", nexus=0):
    flags = lun | kind << 1 | (0x10 if reset else 0) | (0x20 if nexus else 0)
    return bytes([flags]) + cdb16(cdb) + be16(in_cap) + be16(len(out)) + out


def xcopy_hdr(list_id, cscd_len, seg_len):
    # LID1: list id, flags, CSCD list length, reserved, segment list length, inline length
    return bytes([list_id, 0]) + be16(cscd_len) + b"\0" * 4 + be32(seg_len) + be32(0)


def scsi_seeds():
    blk = bytes(range(256)) * 2
    put("fuzz_scsi_cdb", cmd(b"\x12", in_cap=96) + cmd(b"\x12\x01\x00" + be16(255), in_cap=255)
        + cmd(b"\x12\x01\x83" + be16(255), in_cap=255) + cmd(b"\x12\x01\x8f" + be16(255), in_cap=255)
        + cmd(b"\xa0\x00\x00\x00\x00\x00" + be32(256), in_cap=256))
    put("fuzz_scsi_cdb", cmd(b"\x9e\x10" + b"\0" * 8 + be32(32), in_cap=32)
        + cmd(b"\x25", in_cap=8) + cmd(b"\x1a\x00\x3f\x00\xff", in_cap=255)
        + cmd(b"\x5a\x00\x3f\x00\x00\x00\x00" + be16(512), in_cap=512))
    put("fuzz_scsi_cdb", cmd(b"\x8a\x00" + be64(8) + be32(1), out=blk)
        + cmd(b"\x88\x00" + be64(8) + be32(1), in_cap=512)
        + cmd(b"\x89\x00" + be64(8) + b"\0\0\0\x01", out=blk + blk)
        + cmd(b"\x93\x00" + be64(32) + be32(8), out=blk)
        + cmd(b"\x93\x08" + be64(32) + be32(8), out=b"\0" * 512)
        + cmd(b"\x8f\x00" + be64(0) + be32(64))
        + cmd(b"\x35")
        + cmd(b"\x9e\x12" + be64(0) + be32(64), in_cap=64))
    put("fuzz_scsi_cdb", cmd(b"\x2a\x00" + be32(0) + b"\0" + be16(2), lun=1, out=blk * 16)
        + cmd(b"\x28\x00" + be32(0) + b"\0" + be16(2), lun=1, in_cap=8192)
        + cmd(b"\x2f\x00" + be32(0) + b"\0" + be16(2), lun=1))
    # UNMAP: header + one descriptor
    unmap = be16(22) + be16(16) + b"\0" * 4 + be64(100) + be32(8) + b"\0" * 4
    put("fuzz_scsi_cdb", cmd(b"\x42", kind=1, out=unmap))
    # EXTENDED COPY LID1: two 0xE4 CSCDs naming LUN 0 by NAA would need the NAA; use
    # identifier 0xFFFF (this LU) in a block->block segment instead
    seg = b"\x02\x00" + be16(0x18) + be16(0xffff) + be16(0xffff) + b"\0\0" + be16(8) + be64(0) + be64(200)
    xl = xcopy_hdr(1, 0, len(seg)) + seg
    put("fuzz_scsi_cdb", cmd(b"\x83\x00", kind=2, out=xl)
        + cmd(b"\x84\x00\x01", in_cap=64))
    # an E4 CSCD with a made-up NAA, and one segment using it
    cscd = b"\xe4\x00\x00\x00" + b"\x01\x03\x00\x10" + b"\x60" + b"\x11" * 15 + b"\0\0\0\0" + b"\0\x00\x02\x00"
    seg2 = b"\x02\x00" + be16(0x18) + be16(0) + be16(0xffff) + b"\0\0" + be16(8) + be64(0) + be64(300)
    xl2 = xcopy_hdr(2, len(cscd), len(seg2)) + cscd + seg2
    put("fuzz_scsi_cdb", cmd(b"\x83\x00", kind=2, out=xl2))
    # two E4 CSCDs: the harness writes LUN 0's NAA into the first (NAA byte even) and
    # LUN 1's into the second (odd); copy 8 source blocks of LUN 0 to LUN 1
    c0 = b"\xe4\x00\x00\x00" + b"\x01\x03\x00\x10" + b"\x60" + b"\x11" * 15 + b"\0\0\0\0" + b"\0\x00\x02\x00"
    c1 = b"\xe4\x00\x00\x00" + b"\x01\x03\x00\x10" + b"\x61" + b"\x11" * 15 + b"\0\0\0\0" + b"\0\x00\x10\x00"
    seg3 = b"\x02\x00" + be16(0x18) + be16(0) + be16(1) + b"\0\0" + be16(8) + be64(0) + be64(10)
    xl3 = xcopy_hdr(3, 64, len(seg3)) + c0 + c1 + seg3
    put("fuzz_scsi_cdb", cmd(b"\x83\x00", kind=2, out=xl3) + cmd(b"\x84\x00\x03", in_cap=64))
    # POPULATE TOKEN + RRTI, WRITE USING TOKEN with a fresh token, with a garbage one
    pt = be16(30) + b"\0" * 12 + be16(16) + be64(0) + be32(8) + b"\0" * 4
    put("fuzz_scsi_cdb", cmd(b"\x83\x10\x00\x00\x00\x00\x00\x00\x00\x05", kind=3, out=pt)
        + cmd(b"\x84\x07\x00\x00\x00\x05" + b"\0" * 4 + be32(1024), in_cap=1024))
    wut = be16(550) + b"\0" * 14 + b"\0" * 512 + b"\0" * 6 + be16(16) + be64(64) + be32(8) + b"\0" * 4
    put("fuzz_scsi_cdb", cmd(b"\x83\x11\x00\x00\x00\x00\x00\x00\x00\x09", kind=5, out=wut))
    put("fuzz_scsi_cdb", cmd(b"\x83\x11\x00\x00\x00\x00\x00\x00\x00\x09", kind=4, out=wut))
    # PERSISTENT RESERVE OUT: REGISTER key 0x1234, RESERVE WE; PR IN READ RESERVATION
    reg = be64(0) + be64(0x1234) + b"\0" * 8
    res = be64(0x1234) + be64(0) + b"\0" * 8
    put("fuzz_scsi_cdb", cmd(b"\x5f\x00", kind=6, out=reg) + cmd(b"\x5f\x01\x01", kind=6, out=res)
        + cmd(b"\x5e\x01\x00\x00\x00\x00\x00" + be16(64), in_cap=64)
        + cmd(b"\x5f\x02\x01", kind=6, out=res) + cmd(b"\x5f\x00", kind=6, out=be64(0x1234) + be64(0) + b"\0" * 8))
    # two nexuses: 0 registers and reserves EXCLUSIVE ACCESS, 1 is refused a write,
    # registers, PREEMPTs 0's key, then releases by clearing
    put("fuzz_scsi_cdb", cmd(b"\x5f\x00", kind=6, out=be64(0) + be64(0xaa) + b"\0" * 8)
        + cmd(b"\x5f\x01\x03", kind=6, out=be64(0xaa) + be64(0) + b"\0" * 8)
        + cmd(b"\x2a\x00" + be32(0) + b"\0" + be16(1), out=blk, nexus=1)
        + cmd(b"\x5f\x00", kind=6, out=be64(0) + be64(0xbb) + b"\0" * 8, nexus=1)
        + cmd(b"\x5f\x04\x03", kind=6, out=be64(0xbb) + be64(0xaa) + b"\0" * 8, nexus=1)
        + cmd(b"\x5e\x00\x00\x00\x00\x00\x00" + be16(64), in_cap=64)
        + cmd(b"\x5f\x03", kind=6, out=be64(0xbb) + be64(0) + b"\0" * 8, nexus=1))
    # SPC-2 RESERVE(6) by nexus 0, conflicting TEST UNIT READY/RELEASE from nexus 1
    put("fuzz_scsi_cdb", cmd(b"\x16") + cmd(b"\x00", nexus=1) + cmd(b"\x17", nexus=1) + cmd(b"\x17"))
    # MODE SELECT(10): caching page with WCE
    ms = be16(0) + b"\0" * 6 + b"\x08\x12\x04" + b"\0" * 17
    put("fuzz_scsi_cdb", cmd(b"\x55\x10", kind=7, out=ms) + cmd(b"\x1a\x00\x08\x00\xff", in_cap=255))
    put("fuzz_scsi_cdb", cmd(b"\x00", reset=True) + cmd(b"\x03\x00\x00\x00\xfc", in_cap=252)
        + cmd(b"\xa3\x0c\x00\x00\x00\x00" + be32(512), in_cap=512)
        + cmd(b"\xa3\x0d\x00\x00\x00\x00" + be32(64), in_cap=64))

    # parameter list parsers alone: [which][lu][cdb len] + list
    put("fuzz_tpc_lists", b"\x00\x30" + be32(len(xl)) + xl)
    put("fuzz_tpc_lists", b"\x00\x30" + be32(len(xl2)) + xl2)
    put("fuzz_tpc_lists", b"\x01\x30" + be32(len(pt)) + pt)
    pt2 = be16(46) + b"\x02\x00" + be32(0x00800000) + be32(30) + b"\0\0" + be16(32) \
        + be64(0) + be32(8) + b"\0" * 4 + be64(100) + be32(8) + b"\0" * 4
    put("fuzz_tpc_lists", b"\x01\x31" + be32(len(pt2)) + pt2)
    put("fuzz_tpc_lists", b"\x02\x30" + be32(len(wut)) + wut)


def token_seeds():
    put("fuzz_rod_token", b"\x00" + be32(0x00800000) + b"\0\0" + be16(0x1f8) + b"\0" * 120 + b"RODT\x01")
    put("fuzz_rod_token", b"\x01" + be64(0x0123456789abcdef) + be16(200) + b"\x5a")
    put("fuzz_rod_token", b"\x01" + be64(7) + be16(480) + b"\x01" + be16(479) + b"\x01")
    put("fuzz_rod_token", b"\x02\x00")
    put("fuzz_rod_token", b"\x02\x03" + be16(8) + b"\x80" + be16(8) + b"\x80")
    put("fuzz_rod_token", b"\x02\x01" + be16(511) + b"\x01")


def ctl_seeds():
    reqs = [
        {"jsonrpc": "2.0", "id": 1, "method": "array.show"},
        {"jsonrpc": "2.0", "id": 2, "method": "vol.create", "params": {"name": "v1", "size": "1G"}},
        {"jsonrpc": "2.0", "id": 3, "method": "vol.list"},
        {"jsonrpc": "2.0", "id": "x", "method": "vol.show", "params": {"name": "a"}},
        {"jsonrpc": "2.0", "id": 4, "method": "vol.resize", "params": {"name": "a", "size": 33554432}},
        {"jsonrpc": "2.0", "id": 5, "method": "host.create",
         "params": {"name": "h1", "iqns": ["iqn.1994-05.com.redhat:abc", "iqn.2026-11.x:*"],
                    "chap_user": "u", "chap_secret": "0123456789abcdef"}},
        {"jsonrpc": "2.0", "id": 6, "method": "host.connect", "params": {"host": "h1", "volume": "a", "lun": 3}},
        {"jsonrpc": "2.0", "id": 7, "method": "host.list"},
        {"jsonrpc": "2.0", "id": 12, "method": "host.create",
         "params": {"name": "h2", "iqn": "iqn.2026-11.y:z", "chap_user": "u", "chap_secret": "0123456789abcdef",
                    "mutual_user": "m", "mutual_secret": "fedcba9876543210"}},
        {"jsonrpc": "2.0", "id": 13, "method": "vol.create", "params": {"name": "v4k", "size": "64M", "block_size": 4096}},
        {"jsonrpc": "2.0", "id": 14, "method": "vol.resize", "params": {"name": "v4k", "size": "16M", "shrink": True}},
        {"jsonrpc": "2.0", "id": 8, "method": "host.show", "params": {"name": "h1"}},
        {"jsonrpc": "2.0", "id": 9, "method": "host.disconnect", "params": {"host": "h1", "volume": "a"}},
        {"jsonrpc": "2.0", "id": 10, "method": "host.delete", "params": {"name": "h1"}},
        {"jsonrpc": "2.0", "id": 11, "method": "vol.destroy", "params": {"name": "v1"}},
        {"jsonrpc": "2.0", "method": "vol.list"},
        {"jsonrpc": "2.0", "id": None, "method": "nope", "params": []},
    ]
    for r in reqs:
        put("fuzz_ctl_rpc", json.dumps(r).encode())
    put("fuzz_ctl_rpc", b'{"jsonrpc":"2.0","id":1,"id":2,"method":"vol.list"}')
    put("fuzz_ctl_rpc", b'[{"jsonrpc":"2.0","id":1,"method":"vol.list"}]')


# ---- rod.conf ---------------------------------------------------------------------

def conf_seeds():
    put("fuzz_rod_conf", b"""# rodstore
[rodd]
data = /var/lib/rodstore
listen = 0.0.0.0:3260, [::1]:3260
socket = /run/rodstore/rodd.sock
pidfile = /run/rodd.pid
key_file = /etc/rodstore/rod.key
array_name = array-1
http = 127.0.0.1:8080
http_allow_remote = no
capacity = 2T
log_level = info
""")
    put("fuzz_rod_conf", b"data = /x\nlisten = 127.0.0.1:1\nlisten = 127.0.0.1:2\nlog_level = debug\n")
    put("fuzz_rod_conf", b"; comment\ncapacity = 128M\nhttp_allow_remote = true\n  continued\n")
    put("fuzz_rod_conf", b"[other]\ndata = /x\n")
    put("fuzz_rod_conf", b"data =\nbogus = 1\nthis is not ini\n")
    put("fuzz_rod_conf", b"\xef\xbb\xbflisten = [::1:3260\narray_name = bad name\ncapacity = 0\n")
    put("fuzz_rod_conf", b"[rodd]\nmax_volumes = 100\nmax_sessions = 64\nmax_odx_tokens = 512\n"
        b"recovery_window = 2d\ngc_rate = 10M\ngc_threshold = 80\njob_workers = 2\n"
        b"http_require_token = no\nmetrics_interval = 30\n")


def main():
    iscsi_seeds()
    scsi_seeds()
    token_seeds()
    ctl_seeds()
    conf_seeds()
    return 0


if __name__ == "__main__":
    sys.exit(main())
