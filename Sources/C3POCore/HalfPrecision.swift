import CKernels

/// Conversions of stored half-precision weights to Float, one tile at a time.
public enum HalfPrecision {
    /// bfloat16 is the top 16 bits of an IEEE float32.
    @inline(__always)
    public static func bf16ToFloat(_ bits: UInt16) -> Float {
        Float(bitPattern: UInt32(bits) << 16)
    }

    /// Round-to-nearest-even float32 → bfloat16, NaN preserved (as torch does).
    @inline(__always)
    public static func floatToBF16(_ x: Float) -> UInt16 {
        let b = x.bitPattern
        if x.isNaN { return UInt16(b >> 16) | 0x40 }
        let rounding = ((b >> 16) & 1) + 0x7fff
        return UInt16((b &+ rounding) >> 16)
    }

    public static func convertBF16(_ src: UnsafeRawPointer, to dst: UnsafeMutablePointer<Float>, count: Int) {
        let s = src.assumingMemoryBound(to: UInt16.self)
        let d = UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UInt32.self)
        for i in 0..<count { d[i] = UInt32(s[i]) << 16 }
    }

    /// Exact, by the CPU's conversion instructions where it has them (F16C, AVX-512).
    public static func convertF16(_ src: UnsafeRawPointer, to dst: UnsafeMutablePointer<Float>, count: Int) {
        c3po_f16_to_f32_array(src.assumingMemoryBound(to: UInt16.self), dst, count)
    }
}
