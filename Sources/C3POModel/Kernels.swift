import C3POCore
import Dispatch
import Foundation

// Shared numeric primitives of the MoE engines: linear layers on our kernels (C3POCore.MatMul,
// weights read in place in their stored dtype), RMSNorm, RoPE, softmax, SiLU. Buffers are
// row-major Float.

/// A [rows, cols] weight matrix inside a memory-mapped checkpoint tensor, in its stored
/// dtype, multiplied in place by the kernels.
struct WeightMatrix: @unchecked Sendable {
    let tensor: SafetensorsFile.Tensor
    /// Offset of row 0 in elements (a slice of a fused [experts, rows, cols] tensor).
    let offset: Int
    let rows: Int
    let cols: Int

    init(_ tensor: SafetensorsFile.Tensor, offset: Int = 0, rows: Int, cols: Int) {
        self.tensor = tensor; self.offset = offset; self.rows = rows; self.cols = cols
    }

    /// The stored dtype (the loader admits F32, BF16 and F16 only).
    var dtype: WeightDType { WeightDType(tensor.dtype)! }

    /// Row `r` in the mapping, in its stored dtype.
    @inline(__always)
    func pointer(row r: Int) -> UnsafeRawPointer { UnsafeRawPointer(tensor.data + tensor.dtype.size * (offset + r * cols)) }

    /// out[i·ldo + j - lo] = Σ_c x[i·ldx + c] · W[j, c] for tokens i < m and rows lo ≤ j < hi,
    /// on the calling thread.
    @inline(__always)
    func product(_ x: UnsafePointer<Float>, ldx: Int, tokens m: Int, rows lo: Int, _ hi: Int,
                 into out: UnsafeMutablePointer<Float>, ldo: Int) {
        MatMul.linear(x, ldx: ldx, weight: pointer(row: lo), dtype: dtype, ldw: cols, into: out, ldy: ldo, m: m, n: hi - lo, k: cols)
    }

    /// dx[i·ldx + c] (+)= Σ_j dy[i·ldy + j] · W[j, c] for tokens i < m, all columns c, rows
    /// lo ≤ j < hi (dy indexed from row lo): the backward of `product`, on the calling thread.
    @inline(__always)
    func transposedProduct(_ dy: UnsafePointer<Float>, ldy: Int, tokens m: Int, rows lo: Int, _ hi: Int,
                           into dx: UnsafeMutablePointer<Float>, ldx: Int, accumulate: Bool) {
        MatMul.linearTransposed(dy, lddy: ldy, weight: pointer(row: lo), dtype: dtype, ldw: cols, into: dx, lddx: ldx,
                                m: m, n: hi - lo, k: cols, accumulate: accumulate)
    }

    func row(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        tensor.copyFloats(from: offset + r * cols, count: cols, into: dst)
    }
}

enum Kernels {
    /// y[T, out] = x[T, in] · Wᵀ, W [out, in], over the pool's workers (MatMul.linear).
    static func linear(_ x: UnsafePointer<Float>, rows t: Int, weight w: WeightMatrix,
                       into y: UnsafeMutablePointer<Float>, pool: ScratchPool) {
        MatMul.linear(x, rows: t, inFeatures: w.cols, weight: w.pointer(row: 0), dtype: w.dtype, outFeatures: w.rows,
                      into: y, threads: pool.workers)
    }

    /// y_i = x · W_iᵀ for weights of one input (MatMul.linears: one parallel region, for few rows).
    static func linears(_ x: UnsafePointer<Float>, rows t: Int, _ products: [(WeightMatrix, UnsafeMutablePointer<Float>)], pool: ScratchPool) {
        MatMul.linears(x, rows: t, inFeatures: products[0].0.cols,
                       products.map { MatMul.Product(weight: $0.0.pointer(row: 0), dtype: $0.0.dtype, outFeatures: $0.0.rows, data: $0.1) },
                       threads: pool.workers)
    }

    /// dx (+)= Σ dy_i · W_i: the input gradient of `linears` (MatMul.linearsTransposed).
    static func linearsBackward(_ products: [(WeightMatrix, UnsafeMutablePointer<Float>)], rows t: Int, into dx: UnsafeMutablePointer<Float>,
                                accumulate: Bool, pool: ScratchPool) {
        MatMul.linearsTransposed(products.map { MatMul.Product(weight: $0.0.pointer(row: 0), dtype: $0.0.dtype, outFeatures: $0.0.rows, data: $0.1) },
                                 rows: t, inFeatures: products[0].0.cols, into: dx, accumulate: accumulate, threads: pool.workers)
    }

    /// dx[T, in] (+)= dy[T, out] · W, W [out, in]: the input gradient of `linear`, over the pool's
    /// workers (dx's columns split: `linearsBackward` of one product).
    static func linearBackward(_ dy: UnsafePointer<Float>, rows t: Int, weight w: WeightMatrix,
                               into dx: UnsafeMutablePointer<Float>, accumulate: Bool, pool: ScratchPool) {
        linearsBackward([(w, UnsafeMutablePointer(mutating: dy))], rows: t, into: dx, accumulate: accumulate, pool: pool)
    }

    /// The input gradient of `rmsNorm` for one row: y = w ⊙ x · r, r = 1/√(mean(x²) + eps), so
    /// dx = r (w ⊙ dy) − r³ x Σ(w ⊙ dy ⊙ x) / n. `x` is the norm's input. Adds into `dx` when `accumulate`.
    static func rmsNormBackward(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, cols n: Int, weight: [Float], eps: Float,
                                into dx: UnsafeMutablePointer<Float>, accumulate: Bool) {
        var ss: Float = 0, dot: Float = 0
        for i in 0..<n { ss += x[i] * x[i]; dot += weight[i] * dy[i] * x[i] }
        let r = 1 / (ss / Float(n) + eps).squareRoot()
        let c = r * r * r * dot / Float(n)
        for i in 0..<n {
            let g = r * weight[i] * dy[i] - c * x[i]
            dx[i] = accumulate ? dx[i] + g : g
        }
    }

    /// In place: each row of x [t, n] ← x / sqrt(mean(x²) + eps) · weight (OlmoeRMSNorm, f32).
    static func rmsNorm(_ x: UnsafeMutablePointer<Float>, rows t: Int, cols n: Int, weight: [Float], eps: Float) {
        for r in 0..<t {
            let row = x + r * n
            var ss: Float = 0
            for i in 0..<n { ss += row[i] * row[i] }
            let scale = 1 / (ss / Float(n) + eps).squareRoot()
            for i in 0..<n { row[i] = weight[i] * (row[i] * scale) }
        }
    }

    /// out = rmsNorm(x) without touching x.
    static func rmsNorm(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, rows t: Int, cols n: Int, weight: [Float], eps: Float) {
        out.update(from: x, count: t * n)
        rmsNorm(out, rows: t, cols: n, weight: weight, eps: eps)
    }

    static func clamp(_ x: UnsafeMutablePointer<Float>, count: Int, limit: Float) {
        for i in 0..<count { x[i] = min(max(x[i], -limit), limit) }
    }

    /// Numerically stable softmax of `n` values in place.
    @inline(__always)
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) { MatMul.softmax(x, count: n) }

}

/// Rotary position embedding in the rotate_half convention of Hugging Face
/// (modeling_olmoe.py `apply_rotary_pos_emb`): the head's first and second halves are the
/// two coordinates of each rotated pair, inv_freq[i] = 1 / θ^(2i/d).
struct RoPE {
    let headDim: Int
    let invFreq: [Float]

    init(headDim: Int, theta: Double) {
        self.headDim = headDim
        // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in float32.
        invFreq = (0..<(headDim / 2)).map { i in Float(1.0 / pow(theta, Double(Float(2 * i) / Float(headDim)))) }
    }

    /// The transpose of `apply` for one row at `position` (rotation by the negative angle): the
    /// backward of RoPE.
    func applyTransposed(_ x: UnsafeMutablePointer<Float>, heads: Int, position: Int) {
        let half = headDim / 2
        let p = Float(position)
        for i in 0..<half {
            let f = p * invFreq[i]
            let c = cosf(f), s = sinf(f)
            for h in 0..<heads {
                let v = x + h * headDim
                let a = v[i], b = v[i + half]
                v[i] = a * c + b * s
                v[i + half] = b * c - a * s
            }
        }
    }

    /// Rotates every head of rows `x` [t, heads × headDim], row r at position `positions[r]`.
    func apply(_ x: UnsafeMutablePointer<Float>, rows t: Int, heads: Int, firstPosition: Int) {
        let half = headDim / 2
        var cosT = [Float](repeating: 0, count: half), sinT = cosT
        for r in 0..<t {
            let p = Float(firstPosition + r)
            for i in 0..<half {
                let f = p * invFreq[i] // float32 product, as torch computes freqs
                cosT[i] = cosf(f); sinT[i] = sinf(f)
            }
            for h in 0..<heads {
                let v = x + r * heads * headDim + h * headDim
                for i in 0..<half {
                    let a = v[i], b = v[i + half]
                    v[i] = a * cosT[i] - b * sinT[i]
                    v[i + half] = b * cosT[i] + a * sinT[i]
                }
            }
        }
    }
}
