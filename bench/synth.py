#!/usr/bin/env python3
"""Writes a synthetic village list in the Kemendagri CSV format: N villages of regency
32.04, 200 per kecamatan. Usage: synth.py N OUT.csv"""
import sys

n, out = int(sys.argv[1]), sys.argv[2]
with open(out, "w") as f:
    f.write("code,name,district_code,district_name,regency_code,regency_name,province_code,province_name,kind\n")
    for i in range(n):
        d, v = 10 + i // 200, 2001 + i % 200
        f.write(f"32.04.{d:02d}.{v},Sintetis {d} {v},32.04.{d:02d},Kecamatan {d},32.04,Kabupaten Bandung,32,Jawa Barat,desa\n")
