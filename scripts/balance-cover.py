# The balance card's default cover, src/h5/static/balance-cover.png: 900x383 (WeChat's 2.35:1
# news cover), a night-blue gradient with a gold ring and diamond, written as a plain PNG
# (zlib, filter "Up") so that it needs nothing but Python. Run from the repository root.
import math, struct, zlib
W, H = 900, 383
cx, cy = W / 2, H / 2
left, right = (0x1d, 0x24, 0x3a), (0x3b, 0x33, 0x52)
gold = (0xc9, 0xa9, 0x6e)

def cover(d, half):  # anti-aliased coverage of a band of half-width `half` at distance d
    return max(0.0, min(1.0, half + 0.5 - d))

rows = []
for y in range(H):
    row = []
    for x in range(W):
        t = x / (W - 1)
        bg = [left[i] + (right[i] - left[i]) * t for i in range(3)]
        # soft vignette glow behind the ring
        r = math.hypot(x - cx, y - cy)
        glow = max(0.0, 1 - r / 260) ** 2 * 0.18
        bg = [c + (255 - c) * glow * 0.35 for c in bg]
        a = 0.0
        a = max(a, cover(abs(r - 92), 1.6))          # ring
        a = max(a, 0.55 * cover(abs(r - 106), 0.6))  # thin outer ring
        if 150 <= abs(x - cx) <= 340:
            fade = 1 - (abs(x - cx) - 150) / 190
            a = max(a, fade * cover(abs(y - cy), 0.7))  # rules either side
        dm = abs(x - cx) + abs(y - cy)                # diamond
        a = max(a, cover(abs(dm - 38), 2.2))
        a = max(a, max(0.0, min(1.0, 14.5 - dm)))       # filled centre
        row.extend(int(round(bg[i] + (gold[i] - bg[i]) * a)) for i in range(3))
    rows.append(bytes(row))

raw = bytearray()
prev = bytes(W * 3)
for i, row in enumerate(rows):
    raw.append(2 if i else 0)  # Up
    raw.extend(bytes((row[j] - prev[j]) & 0xFF for j in range(len(row))) if i else row)
    prev = row

def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", W, H, 8, 2, 0, 0, 0)) \
    + chunk(b"IDAT", zlib.compress(bytes(raw), 9)) + chunk(b"IEND", b"")
open("src/h5/static/balance-cover.png", "wb").write(png)
print(len(png))
