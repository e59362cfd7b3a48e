import C3POCore
import C3POModel
import Foundation
import XCTest

/// The tail backward (`tailGradient`) against torch autograd: `gradient.json` in every MoE
/// fixture folder, written by Scripts/make-gradient-fixtures (float64 autograd through the whole
/// model, the override's weights a leaf tensor; its float32 run agrees with the float64 one
/// within 1e-4, so that bound is reachable in float32). Each case: a prompt, a set of overridden
/// layers (the last two routed layers, all of them, or the first and last so that the tail
/// crosses live routers and dense layers), ω, four label rows and a target.
/// Every bf16 checkpoint is also run rewritten in f32 (bf16 → f32 is exact, so the golden is
/// the same), which takes the f32 weight path of the kernels.
final class TailGradientTests: XCTestCase {
    struct Golden: Decodable {
        struct Case: Decodable {
            var name: String
            var ids: [Int]
            var critical_layers: [Int]
            var omega: [String: [Float]]
            var label_ids: [Int]
            var target: Int
            var label_logits: [Float]
            var loss: Float
            var grad_omega: [String: [Float]]
        }
        var checkpoint_dtype: String
        var family: String
        var cases: [Case]
    }

    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")
    /// ‖ours − torch‖ / ‖torch‖ over all overridden layers of a case.
    static let relativeTolerance: Float = 1e-4

    static func norm(_ v: [Float]) -> Float { v.reduce(0) { $0 + $1 * $1 }.squareRoot() }

    func check(_ folder: String, family: String, asF32: Bool = false) throws {
        var dir = Self.fixtures.appendingPathComponent(folder)
        let golden = try JSONDecoder().decode(Golden.self, from: Data(contentsOf: dir.appendingPathComponent("gradient.json")))
        XCTAssertEqual(golden.family, family)
        XCTAssertGreaterThanOrEqual(golden.cases.count, 3, "\(folder): too few cases")
        if asF32 {
            XCTAssertEqual(golden.checkpoint_dtype, "bf16")
            dir = try Self.f32Copy(of: dir)
        }
        defer { if asF32 { try? FileManager.default.removeItem(at: dir) } }
        let model = try ModelLoader.load(directory: dir)
        var worst: Float = 0, worstLogit: Float = 0
        for c in golden.cases {
            let state = try model.prefill(c.ids, override: nil)
            let o = RoutingOverride(layers: Dictionary(uniqueKeysWithValues: c.omega.map { (Int($0.key)!, $0.value) }))
            XCTAssertEqual(o.layers.keys.sorted(), c.critical_layers, "\(folder) \(c.name)")
            let g = try model.tailGradient(state, override: o, rows: c.label_ids, target: c.target)
            // The tape's forward is the model's: the same logits as tail re-evaluation and as torch.
            let tail = try model.reevaluateTail(state, fromLayer: c.critical_layers.min()!, override: o, rows: c.label_ids)
            for (a, b) in zip(g.logits, tail) { XCTAssertEqual(a, b, accuracy: 1e-4, "\(folder) \(c.name): tape vs tail logits") }
            for (a, b) in zip(g.logits, c.label_logits) { worstLogit = max(worstLogit, abs(a - b)) }
            // A state stored and restored (`--cache-states`, here without its float16 step) serves the tail as the prefill does.
            let restored = try model.restore(try model.snapshot(state, fromLayer: c.critical_layers.min()!))
            let again = try model.tailGradient(restored, override: o, rows: c.label_ids, target: c.target)
            XCTAssertEqual(again.loss, g.loss, "\(folder) \(c.name): restored state")
            XCTAssertEqual(again.omega, g.omega, "\(folder) \(c.name): restored state")
            // A prefill that stops where tail work needs nothing more (no last-layer attention output
            // or experts, no LM head) stores the same state and gives the same gradient.
            let lowest = c.critical_layers.min()!
            let trimmed = try model.prefillTail(c.ids, fromLayer: lowest)
            XCTAssertTrue(trimmed.logits.isEmpty, "\(folder) \(c.name): a tail state has no logits")
            XCTAssertEqual(try model.snapshot(trimmed, fromLayer: lowest), try model.snapshot(state, fromLayer: lowest), "\(folder) \(c.name): tail prefill")
            let fromTrimmed = try model.tailGradient(trimmed, override: o, rows: c.label_ids, target: c.target)
            XCTAssertEqual(fromTrimmed.loss, g.loss, "\(folder) \(c.name): tail prefill")
            XCTAssertEqual(fromTrimmed.omega, g.omega, "\(folder) \(c.name): tail prefill")
            XCTAssertEqual(g.loss, c.loss, accuracy: 1e-4 * max(1, abs(c.loss)), "\(folder) \(c.name): loss")
            XCTAssertEqual(g.omega.keys.sorted(), c.critical_layers, "\(folder) \(c.name): one gradient per overridden layer")
            var ours: [Float] = [], theirs: [Float] = []
            for l in c.critical_layers {
                let want = try XCTUnwrap(c.grad_omega[String(l)]), got = try XCTUnwrap(g.omega[l])
                XCTAssertEqual(got.count, model.expertCount)
                ours += got; theirs += want
            }
            let rel = Self.norm(zip(ours, theirs).map { $0 - $1 }) / max(Self.norm(theirs), 1e-12)
            XCTAssertGreaterThan(Self.norm(theirs), 0, "\(folder) \(c.name): a zero golden gradient checks nothing")
            XCTAssertLessThanOrEqual(rel, Self.relativeTolerance, "\(folder) \(c.name): ∂loss/∂ω relative error")
            worst = max(worst, rel)
        }
        // One batch of every case's prompt under the first case's override: each row equals its own
        // single run (whose golden agreement is checked above).
        let first = golden.cases[0]
        let o = RoutingOverride(layers: Dictionary(uniqueKeysWithValues: first.omega.map { (Int($0.key)!, $0.value) }))
        let states = try golden.cases.map { try model.prefill($0.ids, override: nil) }
        let batch = try model.tailGradients(states, override: o, rows: golden.cases.map(\.label_ids), targets: golden.cases.map(\.target))
        for (i, c) in golden.cases.enumerated() {
            let single = try model.tailGradient(states[i], override: o, rows: c.label_ids, target: c.target)
            XCTAssertEqual(batch[i].loss, single.loss, accuracy: 1e-5 * max(1, abs(single.loss)), "\(folder) batch row \(i)")
            for l in first.critical_layers {
                let a = batch[i].omega[l]!, b = single.omega[l]!
                // A batch of 8 or more bf16 rows takes the AMX kernels, a single row the AVX-512 ones.
                XCTAssertLessThanOrEqual(Self.norm(zip(a, b).map { $0 - $1 }), 1e-4 * Self.norm(b) + 1e-7, "\(folder) batch row \(i) layer \(l)")
            }
        }
        // The same states again (their lowest layer's memo made above, under another override: the
        // experts chosen now are computed as they are needed), with a logits-only row appended:
        // every row equals fresh states' batch, and the extra row has the tail's logits, no loss
        // and no gradient.
        let second = golden.cases[1]
        let o2 = RoutingOverride(layers: Dictionary(uniqueKeysWithValues: second.omega.map { (Int($0.key)!, $0.value) }))
        let rows = golden.cases.map(\.label_ids), targets: [Int?] = golden.cases.map(\.target)
        let reused = try model.tailGradients(states + [states[0]], override: o2, rows: rows + [first.label_ids], targets: targets + [nil], gradient: true)
        let fresh = try model.tailGradients(try golden.cases.map { try model.prefill($0.ids, override: nil) }, override: o2, rows: rows,
                                            targets: targets, gradient: true)
        for i in golden.cases.indices {
            XCTAssertEqual(reused[i].loss, fresh[i].loss, accuracy: 1e-6 * max(1, abs(fresh[i].loss)), "\(folder) reused row \(i)")
            XCTAssertEqual(reused[i].omega.keys.sorted(), fresh[i].omega.keys.sorted())
            for (l, b) in fresh[i].omega {
                XCTAssertLessThanOrEqual(Self.norm(zip(reused[i].omega[l]!, b).map { $0 - $1 }), 1e-5 * Self.norm(b) + 1e-8, "\(folder) reused row \(i) layer \(l)")
            }
        }
        let extra = try XCTUnwrap(reused.last)
        XCTAssertEqual(extra.loss, 0)
        XCTAssertTrue(extra.omega.isEmpty, "\(folder): a logits-only row has no gradient")
        let tail2 = try model.reevaluateTail(states[0], fromLayer: second.critical_layers.min()!, override: o2, rows: first.label_ids)
        for (a, b) in zip(extra.logits, tail2) { XCTAssertEqual(a, b, accuracy: 1e-4 * max(1, abs(b)), "\(folder): logits-only row") }
        // Rows under overrides of their own (several test questions' neighbours in one batch):
        // each row equals its own call under its override; overrides naming other layers are refused.
        let mixed = golden.cases.filter { Set($0.critical_layers) == Set(first.critical_layers) }
        if mixed.count >= 2 {
            let overrides = mixed.map { c in RoutingOverride(layers: Dictionary(uniqueKeysWithValues: c.omega.map { (Int($0.key)!, $0.value) })) }
            let sts = try mixed.map { try model.prefill($0.ids, override: nil) }
            let rowsOwn = mixed.map(\.label_ids)
            let together = try model.tailGradients(sts + [sts[0]], overrides: overrides + [overrides[1]], rows: rowsOwn + [rowsOwn[0]],
                                                   targets: mixed.map(\.target) + [mixed[0].target], gradient: true)
            for (i, c) in (mixed + [mixed[0]]).enumerated() {
                let o = i < mixed.count ? overrides[i] : overrides[1]
                let alone = try model.tailGradient(sts[i < mixed.count ? i : 0], override: o, rows: c.label_ids, target: c.target)
                XCTAssertEqual(together[i].loss, alone.loss, accuracy: 1e-5 * max(1, abs(alone.loss)), "\(folder) own-override row \(i)")
                for (l, b) in alone.omega {
                    XCTAssertLessThanOrEqual(Self.norm(zip(together[i].omega[l]!, b).map { $0 - $1 }), 1e-4 * Self.norm(b) + 1e-7, "\(folder) own-override row \(i) layer \(l)")
                }
            }
        }
        var fewer = o
        fewer.layers[first.critical_layers.max()!] = nil
        if !fewer.layers.isEmpty {
            XCTAssertThrowsError(try model.tailGradients([states[0], states[1]], overrides: [o, fewer], rows: [first.label_ids, first.label_ids],
                                                         targets: [0, 0], gradient: true)) {
                XCTAssertTrue("\($0)".contains("name different layers"), "\($0)")
            }
        }
        print("\(folder)\(asF32 ? " (as f32)" : ""): \(golden.cases.count) cases, worst relative error of ∂loss/∂ω \(worst), worst |Δ| label logit \(worstLogit)")
        XCTAssertLessThanOrEqual(worstLogit, 1e-3, "\(folder): label logits against torch")
    }

    /// A copy of a checkpoint folder with every safetensors file rewritten in F32.
    static func f32Copy(of dir: URL) throws -> URL {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-f32-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: dir, to: out)
        for name in try FileManager.default.contentsOfDirectory(atPath: out.path) where name.hasSuffix(".safetensors") {
            try SafetensorsRewrite.rewrite(out.appendingPathComponent(name))
        }
        return out
    }

    func testOlmoeF32() throws { try check("moe/olmoe-f32", family: "olmoe") }
    func testOlmoeBF16() throws { try check("moe/olmoe-bf16", family: "olmoe") }
    func testOlmoeGQAClipF32() throws { try check("moe/gqa-f32", family: "olmoe") }
    func testOlmoeGQAClipBF16() throws { try check("moe/gqa-bf16", family: "olmoe") }
    func testQwen2Moe() throws { try check("families/qwen2_moe", family: "qwen2_moe") }
    func testQwen2MoeAsF32() throws { try check("families/qwen2_moe", family: "qwen2_moe", asF32: true) }
    func testQwen3Moe() throws { try check("families/qwen3_moe", family: "qwen3_moe") }
    func testQwen3MoeAsF32() throws { try check("families/qwen3_moe", family: "qwen3_moe", asF32: true) }
    func testMixtral() throws { try check("families/mixtral", family: "mixtral") }
    func testMixtralAsF32() throws { try check("families/mixtral", family: "mixtral", asF32: true) }
    func testDeepseek() throws { try check("families/deepseek", family: "deepseek") }
    func testDeepseekAsF32() throws { try check("families/deepseek", family: "deepseek", asF32: true) }

    /// A snapshot restored with shapes that do not fit the model is refused, naming what is wrong.
    func testRestoredShapesAreChecked() throws {
        let model = try ModelLoader.load(directory: Self.fixtures.appendingPathComponent("moe/olmoe-f32"))
        let state = try model.prefill([1, 2, 3, 4], override: nil)
        let from = model.layerCount - 1
        let good = try model.snapshot(state, fromLayer: from)
        XCTAssertEqual(good.keys.count, 1)
        XCTAssertEqual(good.keys[0].count, 4 * good.keys[0].count / 4)
        var bad = good
        bad.keys[0].removeLast()
        XCTAssertThrowsError(try model.restore(bad)) { XCTAssertTrue("\($0)".contains("keys and values must hold 4 ×"), "\($0)") }
        bad = good
        bad.lastInputs.append([])
        XCTAssertThrowsError(try model.restore(bad)) { XCTAssertTrue("\($0)".contains("layers \(from)..<\(model.layerCount) need 1"), "\($0)") }
        bad = good
        bad.tokens[0] = model.vocabularySize
        XCTAssertThrowsError(try model.restore(bad)) { XCTAssertTrue("\($0)".contains("outside the vocabulary"), "\($0)") }
        // A restored state serves the tail from its layer up, not below.
        let restored = try model.restore(good)
        XCTAssertThrowsError(try model.reevaluateTail(restored, fromLayer: from - 1, override: nil, rows: [1])) {
            XCTAssertTrue("\($0)".contains("keeps only the tail above layer"), "\($0)")
        }
        XCTAssertEqual(try model.reevaluateTail(restored, fromLayer: from, override: nil, rows: [1, 2]),
                       try model.reevaluateTail(state, fromLayer: from, override: nil, rows: [1, 2]))
    }

    /// The transposed product against a plain sum, for every dtype and a ragged shape.
    func testTransposedProductMatchesPlainSum() throws {
        let (m, n, k) = (3, 7, 37)
        var rng = SplitMix64(seed: 5)
        let dy = (0..<(m * n)).map { _ in Float(rng.uniform() * 2 - 1) }
        let w = (0..<(n * k)).map { _ in Float(rng.uniform() * 2 - 1) }
        for dtype in [WeightDType.f32, .bf16, .f16] {
            let stored: [UInt16] = dtype == .bf16 ? w.map(HalfPrecision.floatToBF16) : w.map { Float16($0).bitPattern }
            let values: [Float] = dtype == .f32 ? w : dtype == .bf16 ? stored.map(HalfPrecision.bf16ToFloat) : stored.map { Float(Float16(bitPattern: $0)) }
            var want = [Float](repeating: 0, count: m * k)
            for i in 0..<m { for j in 0..<n { for c in 0..<k { want[i * k + c] += dy[i * n + j] * values[j * k + c] } } }
            for path in KernelPath.allCases where path.isSupported {
                var got = [Float](repeating: 1, count: m * k)
                let run = { (wp: UnsafeRawPointer) in
                    MatMul.linearTransposed(dy, lddy: n, weight: wp, dtype: dtype, ldw: k, into: &got, lddx: k, m: m, n: n, k: k, path: path)
                }
                if dtype == .f32 { w.withUnsafeBytes { run($0.baseAddress!) } } else { stored.withUnsafeBytes { run($0.baseAddress!) } }
                for (a, b) in zip(got, want) { XCTAssertEqual(a, b, accuracy: 1e-5, "\(dtype) \(path)") }
            }
        }
    }
}
