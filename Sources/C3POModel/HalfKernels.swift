import C3POCore
import Foundation

// Products that read half-precision weights straight from the mapping, for the few-token
// paths (tail re-evaluation, experts that received ≤ `directMaxRows` tokens, LM head rows,
// short prompts):
// converting a whole [rows, cols] matrix to f32 to multiply it with one or two vectors
// costs more than the product itself. 8 lanes at a time: bf16 is the top half of an f32,
// so a zero-extend and a shift give the f32 bit pattern; f16 goes through Float16.

/// Loads 8 consecutive stored elements as Float.
protocol HalfLanes {
    static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float>
    static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float
}

enum BF16Lanes: HalfLanes {
    @inline(__always) static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float> {
        let raw = p.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<UInt16>.self)
        return unsafeBitCast(SIMD8<UInt32>(truncatingIfNeeded: raw) &<< 16, to: SIMD8<Float>.self)
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        HalfPrecision.bf16ToFloat(p.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self))
    }
}

enum F16Lanes: HalfLanes {
    @inline(__always) static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float> {
        SIMD8<Float>(p.loadUnaligned(fromByteOffset: 2 * i, as: SIMD8<Float16>.self))
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        Float(p.loadUnaligned(fromByteOffset: 2 * i, as: Float16.self))
    }
}

enum F32Lanes: HalfLanes {
    @inline(__always) static func load8(_ p: UnsafeRawPointer, _ i: Int) -> SIMD8<Float> {
        p.loadUnaligned(fromByteOffset: 4 * i, as: SIMD8<Float>.self)
    }
    @inline(__always) static func load1(_ p: UnsafeRawPointer, _ i: Int) -> Float {
        p.loadUnaligned(fromByteOffset: 4 * i, as: Float.self)
    }
}

enum HalfKernels {
    /// Experts (and linear layers) with at most this many token rows multiply half-precision
    /// weights directly; above it, weights are converted to f32 and go through sgemm.
    /// Crossover measured on the scaled-down OLMoE shape (bf16, 2 threads, docs/benchmarks.md
    /// `## moe`): 16 beat 4 and 32 at 128-token prefills, and beat 0/2/4/8 at 16 tokens.
    /// `C3PO_HALF_DIRECT_MAX` overrides it (for measuring the crossover again).
    static let directMaxRows: Int = {
        if let s = ProcessInfo.processInfo.environment["C3PO_HALF_DIRECT_MAX"], let v = Int(s), v >= 0 { return v }
        return 16
    }()

    /// out[(j - lo)·rowStride + r·tokenStride] = Σ_c W[j, c] · x[r·ldx + c] for rows j in lo ..< hi
    /// and tokens r < m; W read in its stored dtype. x [m, ldx ≥ cols].
    static func product(_ w: WeightMatrix, rows lo: Int, _ hi: Int, x: UnsafePointer<Float>, tokens m: Int, ldx: Int,
                        into out: UnsafeMutablePointer<Float>, rowStride: Int, tokenStride: Int) {
        switch w.tensor.dtype {
        case .BF16: product(BF16Lanes.self, w, lo, hi, x, m, ldx, out, rowStride, tokenStride)
        case .F16: product(F16Lanes.self, w, lo, hi, x, m, ldx, out, rowStride, tokenStride)
        default: product(F32Lanes.self, w, lo, hi, x, m, ldx, out, rowStride, tokenStride)
        }
    }

    /// The same for an arbitrary list of rows: out[i·rowStride + r·tokenStride] for row `rows[i]`.
    static func product(_ w: WeightMatrix, rowList rows: [Int], x: UnsafePointer<Float>, tokens m: Int, ldx: Int,
                        into out: UnsafeMutablePointer<Float>, rowStride: Int, tokenStride: Int) {
        for (i, j) in rows.enumerated() {
            product(w, rows: j, j + 1, x: x, tokens: m, ldx: ldx, into: out + i * rowStride, rowStride: rowStride, tokenStride: tokenStride)
        }
    }

    @inline(__always)
    private static func product<L: HalfLanes>(_: L.Type, _ w: WeightMatrix, _ lo: Int, _ hi: Int, _ x: UnsafePointer<Float>, _ m: Int,
                                              _ ldx: Int, _ out: UnsafeMutablePointer<Float>, _ rowStride: Int, _ tokenStride: Int) {
        let cols = w.cols, esize = w.tensor.dtype.size
        let vec = cols & ~7
        let xr = UnsafeRawPointer(x)
        for j in lo..<hi {
            let row = w.tensor.data + esize * (w.offset + j * cols)
            let o = out + (j - lo) * rowStride
            var r = 0
            // Four tokens per sweep of the row: each weight lane is converted once and used 4 times.
            while r + 4 <= m {
                let x0 = xr + 4 * (r * ldx), x1 = x0 + 4 * ldx, x2 = x1 + 4 * ldx, x3 = x2 + 4 * ldx
                var a0 = SIMD8<Float>(), a1 = SIMD8<Float>(), a2 = SIMD8<Float>(), a3 = SIMD8<Float>()
                var c = 0
                while c < vec {
                    let wv = L.load8(row, c)
                    a0 += wv * x0.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self)
                    a1 += wv * x1.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self)
                    a2 += wv * x2.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self)
                    a3 += wv * x3.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self)
                    c += 8
                }
                var s0 = a0.sum(), s1 = a1.sum(), s2 = a2.sum(), s3 = a3.sum()
                while c < cols {
                    let wv = L.load1(row, c)
                    s0 += wv * x[r * ldx + c]; s1 += wv * x[(r + 1) * ldx + c]
                    s2 += wv * x[(r + 2) * ldx + c]; s3 += wv * x[(r + 3) * ldx + c]
                    c += 1
                }
                o[r * tokenStride] = s0; o[(r + 1) * tokenStride] = s1
                o[(r + 2) * tokenStride] = s2; o[(r + 3) * tokenStride] = s3
                r += 4
            }
            while r < m {
                let x0 = xr + 4 * (r * ldx)
                // Two accumulators so consecutive adds do not wait on each other.
                var a0 = SIMD8<Float>(), a1 = SIMD8<Float>()
                var c = 0
                while c + 16 <= vec {
                    a0 += L.load8(row, c) * x0.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self)
                    a1 += L.load8(row, c + 8) * x0.loadUnaligned(fromByteOffset: 4 * (c + 8), as: SIMD8<Float>.self)
                    c += 16
                }
                while c < vec {
                    a0 += L.load8(row, c) * x0.loadUnaligned(fromByteOffset: 4 * c, as: SIMD8<Float>.self)
                    c += 8
                }
                var s = (a0 + a1).sum()
                while c < cols { s += L.load1(row, c) * x[r * ldx + c]; c += 1 }
                o[r * tokenStride] = s
                r += 1
            }
        }
    }
}
