import Foundation

/// A fast 64-bit checksum of bytes (8-byte words, little-endian: h = rotl(h ⊕ w, 31) · 0x9E3779B97F4A7C15,
/// then the tail bytes, then the length), for data too large to hash with SHA-256 on every read:
/// each stored neighbour state carries one, checked when the state is read. It catches damage and
/// mix-ups, not a forger (as the manifest's SHA-256 do not either).
public enum Checksum64 {
    public static let seed: UInt64 = 0x6333_706F_7374_6174 // "c3postat"

    public static func hash(_ bytes: UnsafeRawBufferPointer, seed: UInt64 = Checksum64.seed) -> UInt64 {
        var h = seed
        let words = bytes.count / 8
        for i in 0..<words {
            let w = UInt64(littleEndian: bytes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self))
            h = ((h ^ w) << 31 | (h ^ w) >> 33) &* 0x9E37_79B9_7F4A_7C15
        }
        for i in (8 * words)..<bytes.count { h = (h ^ UInt64(bytes[i])) &* 0x0100_0000_01B3 }
        h ^= UInt64(bytes.count)
        h ^= h >> 29
        return h
    }
}
