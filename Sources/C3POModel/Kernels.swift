import C3POCore
import Dispatch
import Foundation

// Shared numeric primitives of the MoE engines: mapped weights converted tile by tile,
// linear layers through BLAS, RMSNorm, RoPE, softmax, SiLU. Buffers are row-major Float.

/// A [rows, cols] weight matrix inside a memory-mapped checkpoint tensor, in its stored
/// dtype. F32 is used in place; F16/BF16 row blocks are converted into caller scratch.
struct WeightMatrix: @unchecked Sendable {
    let tensor: SafetensorsFile.Tensor
    /// Offset of row 0 in elements (a slice of a fused [experts, rows, cols] tensor).
    let offset: Int
    let rows: Int
    let cols: Int

    init(_ tensor: SafetensorsFile.Tensor, offset: Int = 0, rows: Int, cols: Int) {
        self.tensor = tensor; self.offset = offset; self.rows = rows; self.cols = cols
    }

    var isF32: Bool { tensor.dtype == .F32 }

    /// Rows `lo ..< hi` as Float: the mapping itself for F32, else converted into `scratch`
    /// (which must hold (hi - lo) × cols floats). [hi - lo, cols]
    @inline(__always)
    func rows(_ lo: Int, _ hi: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if isF32 {
            return UnsafePointer((tensor.data + 4 * (offset + lo * cols)).assumingMemoryBound(to: Float.self))
        }
        tensor.copyFloats(from: offset + lo * cols, count: (hi - lo) * cols, into: scratch)
        return UnsafePointer(scratch)
    }

    func row(_ r: Int, into dst: UnsafeMutablePointer<Float>) {
        tensor.copyFloats(from: offset + r * cols, count: cols, into: dst)
    }
}

/// Per-worker scratch buffers, grown on demand.
final class ScratchPool: @unchecked Sendable {
    private var buffers: [UnsafeMutablePointer<Float>]
    private var sizes: [Int]
    init(workers: Int) {
        buffers = (0..<workers).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: 1) }
        sizes = Array(repeating: 1, count: workers)
    }
    deinit { for b in buffers { b.deallocate() } }
    var workers: Int { buffers.count }
    /// Worker `w`'s buffer of at least `count` floats (only worker `w` may call this for `w`).
    func buffer(_ w: Int, _ count: Int) -> UnsafeMutablePointer<Float> {
        if sizes[w] < count {
            buffers[w].deallocate()
            buffers[w] = UnsafeMutablePointer<Float>.allocate(capacity: count)
            sizes[w] = count
        }
        return buffers[w]
    }
}

enum Kernels {
    /// Runs `body(worker, item)` for items 0..<count on `workers` threads, handing items out
    /// one at a time (experts carry unequal numbers of tokens, so static chunks would idle).
    static func dynamicForEach(_ count: Int, workers: Int, _ body: (Int, Int) -> Void) {
        let n = max(1, min(workers, count))
        if n == 1 { for i in 0..<count { body(0, i) }; return }
        let lock = NSLock()
        var next = 0
        DispatchQueue.concurrentPerform(iterations: n) { w in
            while true {
                lock.lock(); let i = next; next += 1; lock.unlock()
                if i >= count { break }
                body(w, i)
            }
        }
    }

    /// y[T, out] = x[T, in] · Wᵀ, W [out, in]; output columns split in blocks across workers,
    /// each block converted to f32 (if stored in half precision) and multiplied with one sgemm;
    /// half-precision weights times at most `HalfKernels.directMaxRows` rows skip the conversion.
    static func linear(_ x: UnsafePointer<Float>, rows t: Int, weight w: WeightMatrix,
                       into y: UnsafeMutablePointer<Float>, pool: ScratchPool) {
        let blockRows = max(16, min(512, (w.rows + 2 * pool.workers - 1) / (2 * pool.workers)))
        let blocks = (w.rows + blockRows - 1) / blockRows
        dynamicForEach(blocks, workers: pool.workers) { worker, b in
            let lo = b * blockRows, hi = min(w.rows, lo + blockRows)
            if !w.isF32 && t <= HalfKernels.directMaxRows {
                // A few rows (tail re-evaluation, the LM head of one position): read the stored
                // half-precision weights directly instead of converting the block. y[:, lo..<hi]
                HalfKernels.product(w, rows: lo, hi, x: x, tokens: t, ldx: w.cols, into: y + lo, rowStride: 1, tokenStride: w.rows)
                return
            }
            var laps = StageProfile.Laps(StageProfile.shared)
            defer { laps.lap("linear.blocks") }
            let scratch = pool.buffer(worker, w.isF32 ? 1 : (hi - lo) * w.cols)
            let wb = w.rows(lo, hi, scratch: scratch) // [hi - lo, in]
            // [t, in] · [hi - lo, in]ᵀ → y[:, lo..<hi]
            BLAS.sgemm(transB: true, m: t, n: hi - lo, k: w.cols, a: x, lda: w.cols, b: wb, ldb: w.cols,
                       c: y + lo, ldc: w.rows)
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
    static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        var m = -Float.infinity
        for i in 0..<n { m = max(m, x[i]) }
        var s: Float = 0
        for i in 0..<n { x[i] = expf(x[i] - m); s += x[i] }
        let inv = 1 / s
        for i in 0..<n { x[i] *= inv }
    }

    @inline(__always) static func silu(_ x: Float) -> Float { x / (1 + expf(-x)) }
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
