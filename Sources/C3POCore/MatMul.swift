import CKernels
import Dispatch
import Foundation

/// The code paths of our matrix-product kernels (`Sources/CKernels`), slowest first.
public enum KernelPath: Int32, CaseIterable, Sendable, CustomStringConvertible {
    case scalar = 0, avx2, avx512, avx512bf16, amx

    public var name: String { String(cString: c3po_path_name(rawValue)) }
    public var description: String { name }
    /// Whether the CPU and the OS offer every instruction the path uses.
    public var isSupported: Bool { c3po_path_supported(rawValue) != 0 }
    public static var best: KernelPath { KernelPath(rawValue: c3po_best_path()) ?? .scalar }

    public init?(name: String) {
        guard let p = KernelPath.allCases.first(where: { $0.name == name.lowercased() }) else { return nil }
        self = p
    }

    /// The path the tools run: the best one here, or `C3PO_KERNELS` (a path name) when it names
    /// a supported path, for measuring one path against another. An unknown or unsupported name
    /// is ignored with a note on stderr.
    public static let active: KernelPath = {
        guard let s = ProcessInfo.processInfo.environment["C3PO_KERNELS"], !s.isEmpty else { return best }
        guard let p = KernelPath(name: s) else {
            StandardError.warning("C3PO_KERNELS=\(s) is not one of \(allCases.map(\.name).joined(separator: ", ")); using \(best)")
            return best
        }
        guard p.isSupported else {
            StandardError.warning("C3PO_KERNELS=\(s) is not supported by this CPU; using \(best)")
            return best
        }
        return p
    }()
}

/// Stored element types the kernels read in place.
public enum WeightDType: Int32, Sendable {
    case f32 = 0, bf16, f16

    public init?(_ dtype: SafetensorsFile.DType) {
        switch dtype {
        case .F32: self = .f32
        case .BF16: self = .bf16
        case .F16: self = .f16
        default: return nil
        }
    }

    public var size: Int { self == .f32 ? 4 : 2 }
}

/// An f32 weight [n, k] repacked once into panels of 32 output features for the outer-product
/// kernel (c3po_linear_panels): for weights held in memory, such as the embedder's.
public struct PanelWeights: Sendable {
    public let outFeatures: Int
    public let inFeatures: Int
    let panels: [Float]

    /// `weight` [n, k] row-major.
    public init(_ weight: [Float], outFeatures n: Int, inFeatures k: Int) {
        precondition(weight.count == n * k, "weight has \(weight.count) values, not \(n) × \(k)")
        outFeatures = n; inFeatures = k
        panels = [Float](unsafeUninitializedCapacity: c3po_panel_floats(n, k)) { buf, count in
            weight.withUnsafeBufferPointer { c3po_pack_panels($0.baseAddress!, k, n, k, buf.baseAddress!) }
            count = c3po_panel_floats(n, k)
        }
    }
}

/// Linear layers on our kernels: y = x · Wᵀ with W stored [n, k] row-major in its own dtype.
public enum MatMul {
    /// y[i·ldy + j] (+)= Σ_c x[i·ldx + c] · W[j·ldw + c] for i < m, j < n, on the calling thread.
    @inline(__always)
    public static func linear(_ x: UnsafePointer<Float>, ldx: Int, weight w: UnsafeRawPointer, dtype: WeightDType, ldw: Int,
                              into y: UnsafeMutablePointer<Float>, ldy: Int, m: Int, n: Int, k: Int,
                              accumulate: Bool = false, path: KernelPath = .active) {
        c3po_linear(path.rawValue, x, ldx, w, dtype.rawValue, ldw, y, ldy, m, n, k, accumulate ? 1 : 0)
    }

    /// dx[i·lddx + c] (+)= Σ_j dy[i·lddy + j] · W[j·ldw + c] for i < m, c < k, j < n: the input
    /// gradient of `linear`'s layer (dx = dy · W), on the calling thread.
    @inline(__always)
    public static func linearTransposed(_ dy: UnsafePointer<Float>, lddy: Int, weight w: UnsafeRawPointer, dtype: WeightDType, ldw: Int,
                                        into dx: UnsafeMutablePointer<Float>, lddx: Int, m: Int, n: Int, k: Int,
                                        accumulate: Bool = false, path: KernelPath = .active) {
        c3po_linear_t(path.rawValue, dy, lddy, w, dtype.rawValue, ldw, dx, lddx, m, n, k, accumulate ? 1 : 0)
    }

    /// One product of `linears` or `linearsTransposed`: a weight [n, k] in its stored dtype and
    /// its output (y [m, n]) or its output gradient (dy [m, n]).
    public struct Product {
        public var weight: UnsafeRawPointer
        public var dtype: WeightDType
        public var outFeatures: Int
        public var data: UnsafeMutablePointer<Float>
        public init(weight: UnsafeRawPointer, dtype: WeightDType, outFeatures: Int, data: UnsafeMutablePointer<Float>) {
            self.weight = weight; self.dtype = dtype; self.outFeatures = outFeatures; self.data = data
        }
    }

    /// The weight rows of several products, concatenated, in ranges of about `block` rows that
    /// never cross a product: (product, first row, end row).
    static func ranges(_ products: [Product], block: Int) -> [(Int, Int, Int)] {
        var out: [(Int, Int, Int)] = []
        for (i, p) in products.enumerated() {
            let parts = max(1, (p.outFeatures + block - 1) / block), size = (p.outFeatures + parts - 1) / parts
            for lo in stride(from: 0, to: p.outFeatures, by: size) { out.append((i, lo, min(p.outFeatures, lo + size))) }
        }
        return out
    }

    /// y_i [m, n_i] = x [m, k] · W_iᵀ for several weights of one input (q, k and v of a few
    /// rows), as one parallel region: each weight row is read once, by one worker, and the
    /// workers stream from the first product to the last without waiting between them. For
    /// small m (the tail's rows), where each product is a stream of its weight.
    public static func linears(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, _ products: [Product],
                               threads: Int = Parallel.defaultThreads) {
        let parts = ranges(products, block: fewRowsBlock)
        Parallel.dynamicForEach(parts.count, workers: threads) { _, r in
            let (i, lo, hi) = parts[r], p = products[i]
            linear(x, ldx: k, weight: p.weight + lo * k * p.dtype.size, dtype: p.dtype, ldw: k, into: p.data + lo, ldy: p.outFeatures,
                   m: m, n: hi - lo, k: k)
        }
    }

    /// dx [m, k] (+)= Σ_i dy_i [m, n_i] · W_i: the input gradient of `linears`, as one parallel
    /// region. A task is a block of dx's columns: it runs every weight's rows over those columns,
    /// the products in order, so each value of dx is summed by one task in a fixed order (the
    /// result does not depend on which worker took which block) and no partials are added up.
    public static func linearsTransposed(_ products: [Product], rows m: Int, inFeatures k: Int, into dx: UnsafeMutablePointer<Float>,
                                         accumulate: Bool = false, threads: Int = Parallel.defaultThreads) {
        // A few rows stream the weight (segments of 512 values keep the streams long); more rows
        // are bound by arithmetic, and smaller blocks balance the workers.
        let columns = m < 8 ? 512 : 128
        let blocks = max(1, min(k / columns, 4 * threads)), size = ((k + blocks - 1) / blocks + 15) / 16 * 16
        let starts = Array(stride(from: 0, to: k, by: size))
        Parallel.dynamicForEach(starts.count, workers: threads) { _, b in
            let c0 = starts[b], kc = min(k, c0 + size) - c0
            for (i, p) in products.enumerated() {
                linearTransposed(p.data, lddy: p.outFeatures, weight: p.weight + c0 * p.dtype.size, dtype: p.dtype, ldw: k,
                                 into: dx + c0, lddx: k, m: m, n: p.outFeatures, k: kc, accumulate: accumulate || i > 0)
            }
        }
    }

    /// Weight rows per block of `linears` (128 KiB of bf16 at k = 1024).
    static let fewRowsBlock = 64

    /// x[0..<n] ← softmax(x), max subtracted (exp within 2 ulp of expf on AVX-512).
    @inline(__always)
    public static func softmax(_ x: UnsafeMutablePointer<Float>, count n: Int, path: KernelPath = .active) {
        c3po_softmax(path.rawValue, x, n)
    }

    /// g[i] ← silu(g[i]) · u[i], the SwiGLU product.
    @inline(__always)
    public static func siluMul(_ g: UnsafeMutablePointer<Float>, _ u: UnsafePointer<Float>, count n: Int, path: KernelPath = .active) {
        c3po_silu_mul(path.rawValue, g, u, n)
    }

    /// The backward of `siluMul` at gate g and up u from d = ∂/∂(silu(g) · u): dg and du.
    @inline(__always)
    public static func siluMulBackward(_ g: UnsafePointer<Float>, _ u: UnsafePointer<Float>, _ d: UnsafePointer<Float>,
                                       dg: UnsafeMutablePointer<Float>, du: UnsafeMutablePointer<Float>, count n: Int, path: KernelPath = .active) {
        c3po_silu_mul_backward(path.rawValue, g, u, d, dg, du, n)
    }

    /// y [m, n] = x [m, k] · Wᵀ (+ bias) with W in panels, over `threads` workers (blocks of
    /// whole panels). The activations are packed for the kernel once, by token blocks in
    /// parallel, and shared by every panel block (packing them per block cost as much as the
    /// products of a block 96 features wide).
    public static func linear(_ x: UnsafePointer<Float>, rows m: Int, weight w: PanelWeights, bias: UnsafePointer<Float>? = nil,
                              into y: UnsafeMutablePointer<Float>, threads: Int = Parallel.defaultThreads, path: KernelPath = .active) {
        let (n, k) = (w.outFeatures, w.inFeatures)
        guard m > 0, n > 0 else { return }
        let panelsPerBlock = max(1, min(8, (n + 32 * 2 * threads - 1) / (32 * 2 * threads)))
        let block = 32 * panelsPerBlock, blocks = (n + block - 1) / block
        // Packed only where the chosen kernel reads them packed (the other paths read x itself).
        let packs = c3po_panels_read_packed(path.rawValue) != 0
        let packed = UnsafeMutablePointer<Float>.allocate(capacity: packs ? max(1, c3po_packed_rows8_floats(m, k)) : 1)
        defer { packed.deallocate() }
        if packs {
            let tokenBlocks = (m + 7) / 8, per = max(1, (tokenBlocks + 4 * threads - 1) / (4 * threads))
            Parallel.dynamicForEach((tokenBlocks + per - 1) / per, workers: threads) { _, i in
                let b0 = i * per, b1 = min(tokenBlocks, b0 + per)
                c3po_pack_rows8(x + b0 * 8 * k, k, min(m, b1 * 8) - b0 * 8, k, packed + b0 * 8 * k)
            }
        }
        w.panels.withUnsafeBufferPointer { pb in
            let body = { (b: Int) in
                let lo = b * block, hi = min(n, lo + block)
                c3po_linear_panels_packed(path.rawValue, packed, x, k, pb.baseAddress! + lo * k, bias.map { $0 + lo }, y + lo, n, m, hi - lo, k, 0)
            }
            Parallel.dynamicForEach(blocks, workers: threads) { _, b in body(b) }
        }
    }

    /// One query position's attention over `positions` cached rows and its own key and value,
    /// every head (c3po_attend_one): alpha [heads, positions + 1], out [heads · headDim].
    @inline(__always)
    public static func attendOne(_ q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, ldkv: Int,
                                 ownKey: UnsafePointer<Float>, ownValue: UnsafePointer<Float>, positions p: Int, heads: Int, kvHeads: Int,
                                 headDim d: Int, scale: Float, alpha: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>,
                                 path: KernelPath = .active) {
        c3po_attend_one(path.rawValue, q, keys, values, ldkv, ownKey, ownValue, p, heads, kvHeads, d, scale, alpha, out)
    }

    /// The backward of `attendOne` (c3po_attend_one_backward): dq, dOwnKey, dOwnValue accumulate;
    /// `scratch` [heads, positions + 1] is left holding the scaled scores' gradient.
    @inline(__always)
    public static func attendOneBackward(_ q: UnsafePointer<Float>, keys: UnsafePointer<Float>, values: UnsafePointer<Float>, ldkv: Int,
                                         ownKey: UnsafePointer<Float>, ownValue: UnsafePointer<Float>, alpha: UnsafePointer<Float>,
                                         dOut: UnsafePointer<Float>, positions p: Int, heads: Int, kvHeads: Int, headDim d: Int, scale: Float,
                                         scratch: UnsafeMutablePointer<Float>, dq: UnsafeMutablePointer<Float>,
                                         dOwnKey: UnsafeMutablePointer<Float>, dOwnValue: UnsafeMutablePointer<Float>, path: KernelPath = .active) {
        c3po_attend_one_backward(path.rawValue, q, keys, values, ldkv, ownKey, ownValue, alpha, dOut, p, heads, kvHeads, d, scale,
                                 scratch, dq, dOwnKey, dOwnValue)
    }

    /// Floats of the panels of a [n, k] weight (c3po_panel_floats).
    public static func panelFloats(outFeatures n: Int, inFeatures k: Int) -> Int { c3po_panel_floats(n, k) }

    /// W [n, k] (row stride ldw) into panels of 32 output features (c3po_pack_panels).
    public static func packPanels(_ w: UnsafePointer<Float>, ldw: Int, outFeatures n: Int, inFeatures k: Int, into panels: UnsafeMutablePointer<Float>) {
        c3po_pack_panels(w, ldw, n, k, panels)
    }

    /// The panels of the weight Vᵀ [features, rows] from V [rows, features] (row stride ldv): for
    /// y = P · V, whose "output features" are V's columns. Panel p holds V[:, 32p..<32p+32] as
    /// [rows][32], zero padded.
    public static func packTransposedPanels(_ v: UnsafePointer<Float>, ldv: Int, rows: Int, features: Int, into panels: UnsafeMutablePointer<Float>) {
        for p in 0..<((features + 31) / 32) {
            for r in 0..<rows {
                let dst = panels + (p * rows + r) * 32, src = v + r * ldv + p * 32
                let w = min(32, features - p * 32)
                dst.update(from: src, count: w)
                if w < 32 { (dst + w).update(repeating: 0, count: 32 - w) }
            }
        }
    }

    /// y [m, n] = x [m, k] · Wᵀ with W in panels (c3po_linear_panels), on the calling thread.
    @inline(__always)
    public static func linearPanels(_ x: UnsafePointer<Float>, ldx: Int, panels: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, ldy: Int,
                                    m: Int, n: Int, k: Int, path: KernelPath = .active) {
        c3po_linear_panels(path.rawValue, x, ldx, panels, y, ldy, m, n, k, 0)
    }

    /// One row of LayerNorm after a residual add (c3po_add_layer_norm).
    @inline(__always)
    public static func addLayerNorm(_ x: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?, count n: Int, weight: UnsafePointer<Float>,
                                    bias: UnsafePointer<Float>, eps: Float, path: KernelPath = .active) {
        c3po_add_layer_norm(path.rawValue, x, residual, n, weight, bias, eps)
    }

    /// x[i] ← x/2 · (1 + erf(x/√2)), BERT's exact GELU (erf within 1.5e-7 on AVX-512).
    @inline(__always)
    public static func gelu(_ x: UnsafeMutablePointer<Float>, count n: Int, path: KernelPath = .active) {
        c3po_gelu(path.rawValue, x, n)
    }

    /// The same over `threads` workers, output features split in blocks (multiples of 64 rows,
    /// 64 to 1024, about two per worker: each block packs the activations once on the amx
    /// path), plus an optional bias. y [m, n] dense, x [m, k] dense.
    public static func linear(_ x: UnsafePointer<Float>, rows m: Int, inFeatures k: Int, weight w: UnsafeRawPointer, dtype: WeightDType,
                              outFeatures n: Int, bias: UnsafePointer<Float>? = nil, into y: UnsafeMutablePointer<Float>,
                              threads: Int = Parallel.defaultThreads) {
        let block = max(64, min(1024, ((n + 2 * threads - 1) / (2 * threads) + 63) / 64 * 64))
        let blocks = (n + block - 1) / block
        let body = { (b: Int) in
            let lo = b * block, hi = min(n, lo + block)
            linear(x, ldx: k, weight: w + lo * k * dtype.size, dtype: dtype, ldw: k, into: y + lo, ldy: n, m: m, n: hi - lo, k: k)
            if let bias {
                for r in 0..<m { let row = y + r * n; for j in lo..<hi { row[j] += bias[j] } }
            }
        }
        Parallel.dynamicForEach(blocks, workers: threads) { _, b in body(b) }
    }
}
