import C3POCore
import XCTest

/// Every kernel path this CPU supports against a double-precision reference of the same
/// product (weights converted exactly from their stored form); paths the CPU lacks are named as
/// skipped. Shapes cover the remainders of every blocking: tokens not a multiple of 4 or 16,
/// rows not a multiple of 4/16/64, k not a multiple of 8/16/32, strides wider than the data.
final class KernelTests: XCTestCase {
    /// Test values in [-1, 1) from the project's generator.
    struct Rng {
        var g: SplitMix64
        init(s: UInt64) { g = SplitMix64(seed: s) }
        mutating func next() -> Float { Float(g.uniform() * 2 - 1) }
    }

    static func store(_ v: [Float], as dtype: WeightDType) -> [UInt8] {
        switch dtype {
        case .f32: return v.withUnsafeBytes { Array($0) }
        case .bf16: return v.map { HalfPrecision.floatToBF16($0) }.withUnsafeBytes { Array($0) }
        case .f16: return v.map { Float16($0) }.withUnsafeBytes { Array($0) }
        }
    }

    static func stored(_ bytes: [UInt8], _ i: Int, _ dtype: WeightDType) -> Double {
        bytes.withUnsafeBytes { b in
            switch dtype {
            case .f32: return Double(b.load(fromByteOffset: 4 * i, as: Float.self))
            case .bf16: return Double(HalfPrecision.bf16ToFloat(b.load(fromByteOffset: 2 * i, as: UInt16.self)))
            case .f16: return Double(Float(b.load(fromByteOffset: 2 * i, as: Float16.self)))
            }
        }
    }

    /// Largest |ours − reference| / (Σ|x·w| + 1e-30) over the output, for one path and shape.
    func worstError(path: KernelPath, dtype: WeightDType, m: Int, n: Int, k: Int, accumulate: Bool, seed: UInt64) -> Double {
        var rng = Rng(s: seed)
        let ldx = k + 3, ldw = k + 5, ldy = n + 2
        let x = (0..<(m * ldx)).map { _ in rng.next() }
        let wBytes = Self.store((0..<(n * ldw)).map { _ in rng.next() * 0.5 }, as: dtype)
        let y0 = (0..<(m * ldy)).map { _ in rng.next() }
        var y = y0
        wBytes.withUnsafeBytes { wb in
            x.withUnsafeBufferPointer { xb in
                y.withUnsafeMutableBufferPointer { yb in
                    MatMul.linear(xb.baseAddress!, ldx: ldx, weight: wb.baseAddress!, dtype: dtype, ldw: ldw,
                                  into: yb.baseAddress!, ldy: ldy, m: m, n: n, k: k, accumulate: accumulate, path: path)
                }
            }
        }
        var worst = 0.0
        for i in 0..<m {
            for j in 0..<ldy {
                let got = Double(y[i * ldy + j])
                guard j < n else { XCTAssertEqual(got, Double(y0[i * ldy + j]), "\(path) wrote past column n"); continue }
                var s = 0.0, mag = 0.0
                for c in 0..<k {
                    let p = Double(x[i * ldx + c]) * Self.stored(wBytes, j * ldw + c, dtype)
                    s += p; mag += abs(p)
                }
                if accumulate { s += Double(y0[i * ldy + j]); mag += abs(Double(y0[i * ldy + j])) }
                worst = max(worst, abs(got - s) / (mag + 1e-30))
            }
        }
        return worst
    }

    func testEveryPathAgainstTheReference() {
        let shapes: [(m: Int, n: Int, k: Int)] = [
            (1, 1, 7), (1, 50, 64), (3, 5, 100), (4, 16, 32), (5, 33, 96), (16, 64, 128),
            (17, 80, 64), (33, 129, 160), (70, 20, 384), (8, 48, 96), (12, 40, 256),
            // f32 from 12 tokens: tokens in the lanes, 16 or 32 at a time, rows in blocks of 12
            // or 8, then 4, then 1; k not a multiple of 16; a group of tokens past 512 KiB.
            (13, 23, 100), (40, 61, 33), (130, 40, 64), (150, 21, 1000),
        ]
        var ran: [String] = [], skipped: [String] = []
        for path in KernelPath.allCases {
            guard path.isSupported else { skipped.append(path.name); continue }
            ran.append(path.name)
            for dtype in [WeightDType.f32, .bf16, .f16] {
                // Every path to f32 rounding, the bf16-instruction paths included (their
                // activations are split in three bf16 parts: c3po_kernels.h).
                let tolerance = 2e-6
                for (i, s) in shapes.enumerated() {
                    for accumulate in [false, true] {
                        let e = worstError(path: path, dtype: dtype, m: s.m, n: s.n, k: s.k, accumulate: accumulate, seed: UInt64(i * 2 + 1))
                        XCTAssertLessThanOrEqual(e, tolerance, "\(path) \(dtype) m=\(s.m) n=\(s.n) k=\(s.k) accumulate=\(accumulate)")
                    }
                }
            }
        }
        print("kernel paths run: \(ran.joined(separator: ", ")); skipped (not offered by this CPU): \(skipped.isEmpty ? "none" : skipped.joined(separator: ", "))")
        XCTAssertTrue(ran.contains("scalar"))
    }

    func testPanelWeightsOnEveryPathAgainstTheReference() {
        for path in KernelPath.allCases where path.isSupported {
            for (m, n, k) in [(1, 1, 1), (3, 31, 7), (8, 32, 300), (9, 33, 257), (70, 100, 384), (17, 64, 600)] {
                var rng = Rng(s: UInt64(m * 1000 + n + k))
                let x = (0..<(m * k)).map { _ in rng.next() }, w = (0..<(n * k)).map { _ in rng.next() }, b = (0..<n).map { _ in rng.next() }
                let panels = PanelWeights(w, outFeatures: n, inFeatures: k)
                var y = [Float](repeating: .nan, count: m * n)
                x.withUnsafeBufferPointer { xb in b.withUnsafeBufferPointer { bb in y.withUnsafeMutableBufferPointer { yb in
                    MatMul.linear(xb.baseAddress!, rows: m, weight: panels, bias: bb.baseAddress!, into: yb.baseAddress!, threads: 2, path: path)
                } } }
                for i in 0..<m {
                    for j in 0..<n {
                        var s = Double(b[j]), mag = abs(Double(b[j]))
                        for c in 0..<k { let p = Double(x[i * k + c]) * Double(w[j * k + c]); s += p; mag += abs(p) }
                        XCTAssertLessThanOrEqual(abs(Double(y[i * n + j]) - s), 2e-6 * mag, "\(path) panels m=\(m) n=\(n) k=\(k) y[\(i), \(j)]")
                    }
                }
            }
        }
    }

    func testGELUOnEveryPathAgainstDoublePrecision() {
        for path in KernelPath.allCases where path.isSupported {
            var rng = Rng(s: 3)
            let x = (0..<1000).map { _ in rng.next() * 8 }
            var y = x
            y.withUnsafeMutableBufferPointer { MatMul.gelu($0.baseAddress!, count: x.count, path: path) }
            for (a, b) in zip(x, y) {
                let want = 0.5 * Double(a) * (1 + erf(Double(a) / 2.0.squareRoot()))
                XCTAssertEqual(Double(b), want, accuracy: 1e-6 * max(1, abs(want)), "\(path) gelu(\(a))")
            }
        }
    }

    func testSoftmaxAndSiLUOnEveryPathAgainstDoublePrecision() {
        for path in KernelPath.allCases where path.isSupported {
            for n in [1, 5, 16, 17, 100, 513] {
                var rng = Rng(s: UInt64(n))
                // Wide range: large negative and positive logits, exp underflowing to 0 for some.
                let x = (0..<n).map { _ in rng.next() * 60 }
                var y = x
                y.withUnsafeMutableBufferPointer { MatMul.softmax($0.baseAddress!, count: n, path: path) }
                let m = x.map(Double.init).max()!
                let e = x.map { Foundation.exp(Double($0) - m) }, total = e.reduce(0, +)
                for i in 0..<n { XCTAssertEqual(Double(y[i]), e[i] / total, accuracy: 1e-6 * max(1, e[i] / total), "\(path) softmax n=\(n) [\(i)]") }
                var g = x.map { $0 / 4 }
                let u = (0..<n).map { _ in rng.next() }
                let g0 = g
                g.withUnsafeMutableBufferPointer { gb in u.withUnsafeBufferPointer { MatMul.siluMul(gb.baseAddress!, $0.baseAddress!, count: n, path: path) } }
                for i in 0..<n {
                    let a = Double(g0[i]), want = a / (1 + Foundation.exp(-a)) * Double(u[i])
                    XCTAssertEqual(Double(g[i]), want, accuracy: 2e-6 * max(1, abs(want)), "\(path) silu n=\(n) [\(i)]")
                }
            }
        }
    }

    func testTheActivePathIsSupportedAndBestFollowsThePreferenceOrder() {
        XCTAssertTrue(KernelPath.active.isSupported)
        let preferred: [KernelPath] = [.amx, .avx512, .avx512bf16, .avx2, .scalar]
        XCTAssertEqual(KernelPath.best, preferred.first(where: \.isSupported))
        XCTAssertEqual(KernelPath(name: "AVX512BF16"), .avx512bf16)
        XCTAssertNil(KernelPath(name: "neon"))
    }

    func testParallelLinearAddsTheBiasAndCoversEveryColumn() {
        var rng = Rng(s: 7)
        let (m, n, k) = (9, 300, 40)
        let x = (0..<(m * k)).map { _ in rng.next() }, w = (0..<(n * k)).map { _ in rng.next() }, b = (0..<n).map { _ in rng.next() }
        var y = [Float](repeating: .nan, count: m * n)
        x.withUnsafeBufferPointer { xb in w.withUnsafeBytes { wb in b.withUnsafeBufferPointer { bb in y.withUnsafeMutableBufferPointer { yb in
            MatMul.linear(xb.baseAddress!, rows: m, inFeatures: k, weight: wb.baseAddress!, dtype: .f32, outFeatures: n,
                          bias: bb.baseAddress!, into: yb.baseAddress!, threads: 2)
        } } } }
        for i in 0..<m {
            for j in 0..<n {
                var s = Double(b[j])
                for c in 0..<k { s += Double(x[i * k + c]) * Double(w[j * k + c]) }
                XCTAssertEqual(Double(y[i * n + j]), s, accuracy: 1e-4, "y[\(i), \(j)]")
            }
        }
    }

    func testSiLUBackwardOnEveryPathAgainstDoublePrecision() {
        for path in KernelPath.allCases where path.isSupported {
            for n in [1, 15, 16, 33, 513] {
                var rng = Rng(s: UInt64(100 + n))
                let g = (0..<n).map { _ in rng.next() * 15 }, u = (0..<n).map { _ in rng.next() }, d = (0..<n).map { _ in rng.next() }
                var dg = [Float](repeating: .nan, count: n), du = dg
                dg.withUnsafeMutableBufferPointer { gb in du.withUnsafeMutableBufferPointer { ub in
                    MatMul.siluMulBackward(g, u, d, dg: gb.baseAddress!, du: ub.baseAddress!, count: n, path: path)
                } }
                for i in 0..<n {
                    let a = Double(g[i]), s = 1 / (1 + Foundation.exp(-a))
                    let wantU = Double(d[i]) * a * s, wantG = Double(d[i]) * Double(u[i]) * s * (1 + a * (1 - s))
                    XCTAssertEqual(Double(du[i]), wantU, accuracy: 2e-6 * max(1, abs(wantU)), "\(path) du n=\(n) [\(i)]")
                    XCTAssertEqual(Double(dg[i]), wantG, accuracy: 2e-6 * max(1, abs(wantG)), "\(path) dg n=\(n) [\(i)]")
                }
            }
        }
    }

    /// Several products of one input as one parallel region, and their summed input gradient,
    /// against double precision: every row of every product covered, whatever the split.
    func testProductsOfOneInputAndTheirSummedGradient() {
        var rng = Rng(s: 11)
        let (m, k) = (3, 72), widths = [130, 64, 7]
        let x = (0..<(m * k)).map { _ in rng.next() }
        let ws = widths.map { n in (0..<(n * k)).map { _ in rng.next() } }
        for dtype in [WeightDType.f32, .bf16] {
            let stored = ws.map { Self.store($0, as: dtype) }
            let exact = stored.map { b in (0..<(b.count / dtype.size)).map { Self.stored(b, $0, dtype) } } // the weights as stored
            for threads in [1, 2, 3] {
                var ys = widths.map { [Float](repeating: .nan, count: m * $0) }
                let dys = widths.map { n in (0..<(m * n)).map { _ in rng.next() } }
                var dx = [Float](repeating: 1, count: m * k)
                withPointers(stored, &ys) { wp, yp in
                    let products = widths.indices.map { MatMul.Product(weight: wp[$0], dtype: dtype, outFeatures: widths[$0], data: yp[$0]) }
                    x.withUnsafeBufferPointer { MatMul.linears($0.baseAddress!, rows: m, inFeatures: k, products, threads: threads) }
                }
                var dyCopy = dys
                withPointers(stored, &dyCopy) { wp, dp in
                    let products = widths.indices.map { MatMul.Product(weight: wp[$0], dtype: dtype, outFeatures: widths[$0], data: dp[$0]) }
                    dx.withUnsafeMutableBufferPointer { MatMul.linearsTransposed(products, rows: m, inFeatures: k, into: $0.baseAddress!, accumulate: true, threads: threads) }
                }
                for (p, n) in widths.enumerated() {
                    for i in 0..<m { for j in 0..<n {
                        var s = 0.0
                        for c in 0..<k { s += Double(x[i * k + c]) * Double(exact[p][j * k + c]) }
                        XCTAssertEqual(Double(ys[p][i * n + j]), s, accuracy: 1e-4, "\(dtype) threads \(threads): y\(p)[\(i), \(j)]")
                    } }
                }
                for i in 0..<m { for c in 0..<k {
                    var s = 1.0 // accumulated onto
                    for (p, n) in widths.enumerated() { for j in 0..<n { s += Double(dys[p][i * n + j]) * Double(exact[p][j * k + c]) } }
                    XCTAssertEqual(Double(dx[i * k + c]), s, accuracy: 1e-4, "\(dtype) threads \(threads): dx[\(i), \(c)]")
                } }
            }
        }
    }

    /// dx (+)= dy · W on every path against double precision: weight rows not a multiple of the
    /// kernel's 8, tokens 1 to 24, and dx rows a multiple of 1 KiB apart (staged in padded rows
    /// against 4K aliasing) or not, written only within their k columns.
    func testTransposedProductOnEveryPathAgainstDoublePrecision() {
        let shapes: [(m: Int, n: Int, k: Int, lddx: Int)] = [
            (1, 9, 33, 33), (3, 64, 256, 256), (4, 19, 512, 512), (5, 8, 100, 256), (12, 37, 1024, 1024),
            (24, 16, 250, 256), (7, 70, 48, 50),
        ]
        for path in KernelPath.allCases where path.isSupported {
            for dtype in [WeightDType.f32, .bf16, .f16] {
                for (i, s) in shapes.enumerated() {
                    var rng = Rng(s: UInt64(100 + i))
                    let dy = (0..<(s.m * s.n)).map { _ in rng.next() }
                    let wBytes = Self.store((0..<(s.n * s.k)).map { _ in rng.next() }, as: dtype)
                    for accumulate in [false, true] {
                        let dx0 = (0..<(s.m * s.lddx)).map { _ in rng.next() }
                        var dx = dx0
                        wBytes.withUnsafeBytes { wb in
                            MatMul.linearTransposed(dy, lddy: s.n, weight: wb.baseAddress!, dtype: dtype, ldw: s.k, into: &dx, lddx: s.lddx,
                                                    m: s.m, n: s.n, k: s.k, accumulate: accumulate, path: path)
                        }
                        for q in 0..<s.m {
                            for c in 0..<s.lddx {
                                let got = Double(dx[q * s.lddx + c])
                                guard c < s.k else { XCTAssertEqual(got, Double(dx0[q * s.lddx + c]), "\(path) wrote past column k"); continue }
                                var sum = accumulate ? Double(dx0[q * s.lddx + c]) : 0, mag = abs(sum)
                                for j in 0..<s.n { let p = Double(dy[q * s.n + j]) * Self.stored(wBytes, j * s.k + c, dtype); sum += p; mag += abs(p) }
                                XCTAssertLessThanOrEqual(abs(got - sum), 2e-6 * mag + 1e-30, "\(path) \(dtype) m=\(s.m) n=\(s.n) k=\(s.k) dx[\(q), \(c)]")
                            }
                        }
                    }
                }
            }
        }
    }

    /// `linearsTransposed` splits dx's columns over tasks (512 a task below 8 rows, 128 from 8):
    /// both regimes, over 1-3 workers, against double precision, and the same bits whatever the
    /// workers' count.
    func testSummedGradientOfSeveralProductsInBothRegimes() {
        let k = 1024, widths = [256, 64, 72]
        var rng = Rng(s: 21)
        let stored = widths.map { n in Self.store((0..<(n * k)).map { _ in rng.next() }, as: .bf16) }
        for m in [3, 12] {
            let dys = widths.map { n in (0..<(m * n)).map { _ in rng.next() } }
            var results: [[Float]] = []
            for threads in [1, 2, 3] {
                var dx = [Float](repeating: 0.5, count: m * k), dyCopy = dys
                withPointers(stored, &dyCopy) { wp, dp in
                    let products = widths.indices.map { MatMul.Product(weight: wp[$0], dtype: .bf16, outFeatures: widths[$0], data: dp[$0]) }
                    dx.withUnsafeMutableBufferPointer { MatMul.linearsTransposed(products, rows: m, inFeatures: k, into: $0.baseAddress!, accumulate: true, threads: threads) }
                }
                results.append(dx)
            }
            XCTAssertEqual(results[0], results[1], "m=\(m): one worker and two give the same bits")
            XCTAssertEqual(results[0], results[2], "m=\(m): one worker and three give the same bits")
            for i in 0..<m { for c in stride(from: 0, to: k, by: 7) {
                var s = 0.5, mag = 0.5
                for (p, n) in widths.enumerated() { for j in 0..<n { let v = Double(dys[p][i * n + j]) * Self.stored(stored[p], j * k + c, .bf16); s += v; mag += abs(v) } }
                XCTAssertLessThanOrEqual(abs(Double(results[1][i * k + c]) - s), 2e-6 * mag, "m=\(m): dx[\(i), \(c)]")
            } }
        }
    }

    /// Raw pointers to each stored weight and each output buffer, for the body's duration.
    private func withPointers(_ stored: [[UInt8]], _ outs: inout [[Float]], _ body: ([UnsafeRawPointer], [UnsafeMutablePointer<Float>]) -> Void) {
        let w = stored.map { s -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: s.count, alignment: 64)
            s.withUnsafeBytes { p.copyMemory(from: $0.baseAddress!, byteCount: s.count) }
            return p
        }
        let o = outs.map { v -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: v.count)
            p.initialize(from: v, count: v.count)
            return p
        }
        body(w.map { UnsafeRawPointer($0) }, o)
        for i in outs.indices { outs[i] = Array(UnsafeBufferPointer(start: o[i], count: outs[i].count)); o[i].deallocate() }
        for p in w { p.deallocate() }
    }

    /// Every float16 bit pattern, at every offset of a vector (the masked tail included), as
    /// Swift's own Float16 converts it.
    func testFloat16ConversionOfEveryBitPattern() {
        let bits = (0...UInt16.max).map { $0 }
        for start in [0, 3] {
            let n = bits.count - start
            var out = [Float](repeating: 0, count: n)
            bits.withUnsafeBytes { b in out.withUnsafeMutableBufferPointer { HalfPrecision.convertF16(b.baseAddress! + 2 * start, to: $0.baseAddress!, count: n) } }
            for i in 0..<n {
                let want = Float(Float16(bitPattern: bits[start + i]))
                if want.isNaN { XCTAssertTrue(out[i].isNaN, "bits \(bits[start + i])") } else { XCTAssertEqual(out[i].bitPattern, want.bitPattern, "bits \(bits[start + i])") }
            }
        }
    }

    func testLayerNormAfterAResidualOnEveryPathAgainstDoublePrecision() {
        for path in KernelPath.allCases where path.isSupported {
            for n in [1, 7, 16, 33, 384] {
                var rng = Rng(s: UInt64(500 + n))
                let x = (0..<n).map { _ in rng.next() * 3 + 0.5 }, r = (0..<n).map { _ in rng.next() }
                let w = (0..<n).map { _ in rng.next() }, b = (0..<n).map { _ in rng.next() }
                for withResidual in [false, true] {
                    var y = x
                    y.withUnsafeMutableBufferPointer { yb in r.withUnsafeBufferPointer { rb in
                        MatMul.addLayerNorm(yb.baseAddress!, residual: withResidual ? rb.baseAddress! : nil, count: n, weight: w, bias: b, eps: 1e-12)
                    } }
                    let v = (0..<n).map { Double(x[$0]) + (withResidual ? Double(r[$0]) : 0) }
                    let mean = v.reduce(0, +) / Double(n), variance = v.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
                    for j in 0..<n {
                        let want = (v[j] - mean) / (variance + 1e-12).squareRoot() * Double(w[j]) + Double(b[j])
                        XCTAssertEqual(Double(y[j]), want, accuracy: n == 1 ? 1e-3 : 2e-5 * max(1, abs(want)), "\(path) n=\(n) residual \(withResidual) [\(j)]")
                    }
                }
            }
        }
    }

    /// One query's attention over a cache (and its backward) on every path, against the same
    /// formulas in double precision: GQA (2 query heads a kv head), a strided cache, no cache.
    func testAttendOneAndItsBackwardOnEveryPath() {
        let (heads, kvHeads, d, ldkv) = (4, 2, 32, 2 * 32 + 16)
        let group = heads / kvHeads, scale = 1 / Float(d).squareRoot()
        for path in KernelPath.allCases where path.isSupported {
            for p in [0, 1, 17] {
                var rng = Rng(s: UInt64(900 + p))
                let q = (0..<(heads * d)).map { _ in rng.next() }, dOut = (0..<(heads * d)).map { _ in rng.next() }
                let keys = (0..<(max(1, p) * ldkv)).map { _ in rng.next() }, values = (0..<(max(1, p) * ldkv)).map { _ in rng.next() }
                let ownK = (0..<(kvHeads * d)).map { _ in rng.next() }, ownV = (0..<(kvHeads * d)).map { _ in rng.next() }
                var alpha = [Float](repeating: .nan, count: heads * (p + 1)), out = [Float](repeating: .nan, count: heads * d)
                var ds = alpha, dq = [Float](repeating: 0.5, count: heads * d), dk = [Float](repeating: 0.5, count: kvHeads * d), dv = dk
                MatMul.attendOne(q, keys: keys, values: values, ldkv: ldkv, ownKey: ownK, ownValue: ownV, positions: p, heads: heads, kvHeads: kvHeads,
                                 headDim: d, scale: scale, alpha: &alpha, into: &out, path: path)
                MatMul.attendOneBackward(q, keys: keys, values: values, ldkv: ldkv, ownKey: ownK, ownValue: ownV, alpha: alpha, dOut: dOut,
                                         positions: p, heads: heads, kvHeads: kvHeads, headDim: d, scale: scale, scratch: &ds,
                                         dq: &dq, dOwnKey: &dk, dOwnValue: &dv, path: path)
                var wantDq = [Double](repeating: 0.5, count: heads * d), wantDk = [Double](repeating: 0.5, count: kvHeads * d), wantDv = wantDk
                for h in 0..<heads {
                    let g = h / group
                    func key(_ j: Int, _ c: Int) -> Double { Double(j < p ? keys[j * ldkv + g * d + c] : ownK[g * d + c]) }
                    func value(_ j: Int, _ c: Int) -> Double { Double(j < p ? values[j * ldkv + g * d + c] : ownV[g * d + c]) }
                    let scores = (0...p).map { j in (0..<d).reduce(0.0) { $0 + Double(q[h * d + $1]) * key(j, $1) } * Double(scale) }
                    let top = scores.max()!, e = scores.map { Foundation.exp($0 - top) }, total = e.reduce(0, +), a = e.map { $0 / total }
                    for j in 0...p { XCTAssertEqual(Double(alpha[h * (p + 1) + j]), a[j], accuracy: 1e-6, "\(path) p=\(p) alpha[\(h), \(j)]") }
                    for c in 0..<d {
                        let o = (0...p).reduce(0.0) { $0 + a[$1] * value($1, c) }
                        XCTAssertEqual(Double(out[h * d + c]), o, accuracy: 1e-5, "\(path) p=\(p) out[\(h), \(c)]")
                    }
                    let da = (0...p).map { j in (0..<d).reduce(0.0) { $0 + Double(dOut[h * d + $1]) * value(j, $1) } }
                    let mean = zip(a, da).reduce(0.0) { $0 + $1.0 * $1.1 }
                    let dsc = (0...p).map { a[$0] * (da[$0] - mean) * Double(scale) }
                    for c in 0..<d {
                        wantDq[h * d + c] += (0...p).reduce(0.0) { $0 + dsc[$1] * key($1, c) }
                        wantDk[g * d + c] += dsc[p] * Double(q[h * d + c])
                        wantDv[g * d + c] += a[p] * Double(dOut[h * d + c])
                    }
                }
                for i in dq.indices { XCTAssertEqual(Double(dq[i]), wantDq[i], accuracy: 1e-5, "\(path) p=\(p) dq[\(i)]") }
                for i in dk.indices { XCTAssertEqual(Double(dk[i]), wantDk[i], accuracy: 1e-5, "\(path) p=\(p) dk[\(i)]") }
                for i in dv.indices { XCTAssertEqual(Double(dv[i]), wantDv[i], accuracy: 1e-5, "\(path) p=\(p) dv[\(i)]") }
            }
        }
    }
}
