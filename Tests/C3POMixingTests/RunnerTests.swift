import C3POCore
import C3POIndex
import C3POMixing
import C3POModel
import Foundation
import XCTest

/// The runner on `ToyModel`: every expected answer below follows from the toy's rule
/// (answer = expert with the most top-1 weight summed over the 3 layers).
final class RunnerTests: XCTestCase {
    static let aHeavy: [[Float]] = [[0.7, 0.1, 0.1, 0.1], [0.5, 0.3, 0.1, 0.1], [0.5, 0.3, 0.1, 0.1]]
    static let bPath: [[Float]] = Array(repeating: [0.1, 0.7, 0.1, 0.1], count: 3)
    static let cPath: [[Float]] = Array(repeating: [0.1, 0.1, 0.7, 0.1], count: 3)
    static let dPath: [[Float]] = Array(repeating: [0.1, 0.1, 0.1, 0.7], count: 3)

    func makeModel() -> ToyModel {
        ToyModel(routes: ["P1": Self.aHeavy, "P2": Self.bPath, "R1": Self.bPath, "R2": Self.bPath])
    }

    /// r1 (sim 0.8), r2 (0.6): successful, B-pathways. r3 (sim 1.0 > 0.95): overlap, C-pathway.
    /// r4 (sim 0.9): incorrect, D-pathway. Neither r3 nor r4 may ever be a neighbour.
    func makePool() throws -> ReferencePool {
        let refs = [
            ReferenceRecord(id: "r1", task: "t1", question: "r1", gold: "B", prompt: "R1", labels: ["A", "B", "C", "D"]),
            ReferenceRecord(id: "r2", task: "t1", question: "r2", gold: "B", prompt: "R2", labels: ["A", "B", "C", "D"]),
            ReferenceRecord(id: "r3", task: "t2", question: "r3", gold: "C", prompt: "R3", labels: ["A", "B", "C", "D"]),
            ReferenceRecord(id: "r4", task: "t2", question: "r4", gold: "D", correct: false, prompt: "R4", labels: ["A", "B", "C", "D"]),
        ]
        let emb: [Float] = [0.8, 0.6, 0.6, 0.8, 1, 0, 0.9, 0.43588989]
        let paths = [Self.bPath, Self.bPath, Self.cPath, Self.dPath].flatMap { $0.flatMap { $0 } }
        return try ReferencePool(references: refs, embeddings: emb, dimension: 2, pathways: paths, layers: 3, experts: 4)
    }

    let embedder = TableEmbedder(table: ["q1": [1, 0], "q2": [1, 0], "q3": [1, 0], "q4": [1, 0]])

    func questions() -> [MCQuestion] {
        let l = ["A", "B", "C", "D"]
        return [
            // base: A = 0.7 + 0.5 + 0.5 = 1.7 → A; gold B
            MCQuestion(id: "q1", task: "t1", split: "test", question: "q1", choices: l, labels: l, answerIndex: 1, prompt: "P1"),
            // base: B (2.1); gold B
            MCQuestion(id: "q2", task: "t1", split: "test", question: "q2", choices: l, labels: l, answerIndex: 1, prompt: "P2"),
            // labels the toy cannot encode → skip
            MCQuestion(id: "q3", task: "t1", split: "test", question: "q3", choices: ["x", "y"], labels: ["X", "Y"], answerIndex: 0, prompt: "P1"),
            // 41 bytes > maxContext 40 → skip
            MCQuestion(id: "q4", task: "t1", split: "test", question: "q4", choices: l, labels: l, answerIndex: 0, prompt: String(repeating: "x", count: 41)),
        ]
    }

    func run(_ configure: (inout RunnerOptions) -> Void, weights: TaskWeights? = nil) throws -> ([SampleResult], ToyModel, [String: RoutingOverride]) {
        var o = RunnerOptions()
        o.criticalLayerCount = 2  // layers 1, 2
        o.coreExperts = 4
        o.k = 2
        o.kernel = .cosine
        o.progress = false
        configure(&o)
        let model = makeModel()
        let runner = try C3PORunner(model: model, embedder: embedder, pool: try makePool(), taskWeights: weights, options: o)
        var overrides: [String: RoutingOverride] = [:]
        let results = try runner.run(questions()) { r, ov in if let ov { overrides[r.id] = ov } }
        return (results, model, overrides)
    }

    func testKernelAlphaZeroMovesTowardSuccessfulNeighbours() throws {
        // α = 0, cosine kernel: ω̂ = B-pathway on layers 1, 2 → B gets 0.7 + 0.7 = 1.4 > A's 0.7 → B
        let (rs, model, overrides) = try run { $0.alpha = .fixed(0) }
        XCTAssertEqual(rs.map(\.baseAnswer), ["A", "B", nil, nil])
        XCTAssertEqual(rs.map(\.c3poAnswer), ["B", "B", nil, nil])
        XCTAssertEqual(rs[0].neighbors.map(\.id), ["r1", "r2"], "overlap (r3) and incorrect (r4) references are never neighbours")
        XCTAssertEqual(rs[0].neighbors.map(\.similarity), [0.8, 0.6])
        XCTAssertNotNil(rs[2].skipped); XCTAssertTrue(rs[2].skipped?.contains("label") ?? false, rs[2].skipped ?? "")
        XCTAssertTrue(rs[3].skipped?.contains("41 tokens") ?? false, rs[3].skipped ?? "")
        XCTAssertEqual(model.prefills, 2, "one full pass per runnable sample")
        XCTAssertEqual(model.tails, 2, "one tail re-evaluation per runnable sample")
        XCTAssertEqual(Set(overrides["q1"]?.layers.keys ?? [:].keys), [1, 2], "only the critical layers are overridden")
        let s = RunSummary(results: rs, method: .kernel)
        XCTAssertEqual(s.total, 2); XCTAssertEqual(s.skipped, 2)
        XCTAssertEqual(s.baseAccuracy, 0.5); XCTAssertEqual(s.c3poAccuracy, 1)
        XCTAssertEqual(s.improved, 1); XCTAssertEqual(s.worsened, 0)
        XCTAssertEqual(s.byTask["t1"]?.total, 2)
        XCTAssertGreaterThanOrEqual(s.c3poOverheadRatio, 0)
    }

    func testAlphaOneEqualsBase() throws {
        let (rs, _, _) = try run { $0.alpha = .fixed(1); $0.kernel = .gaussian }
        for r in rs where r.skipped == nil { XCTAssertEqual(r.c3poAnswer, r.baseAnswer, r.id) }
    }

    func testAlphaHalfStillFlips() throws {
        // α = 0.5 on layer 1: [0.3, 0.5, 0.1, 0.1] → top-1 B (0.5) in layers 1, 2: B = 1.0 > A = 0.7
        let (rs, _, _) = try run { $0.alpha = .fixed(0.5) }
        XCTAssertEqual(rs[0].c3poAnswer, "B")
        XCTAssertEqual(rs[0].alpha, 0.5)
    }

    func testNoneAndPublishedNeighbors() throws {
        let (none, model, _) = try run { $0.method = .none }
        XCTAssertEqual(none.map(\.c3poAnswer), none.map(\.baseAnswer))
        XCTAssertEqual(model.tails, 0)
        let (pub, _, ov) = try run { $0.method = .neighbors }
        XCTAssertEqual(pub[0].c3poAnswer, "B")
        // published average of two B-pathways, renormalised = the B-pathway itself
        XCTAssertEqual(ov["q1"]?.layers[2] ?? [], Self.bPath[2].map { $0 / 1.0 })
    }

    func testAlphaSearchPicksTheNeighboursBestAlpha() throws {
        // Neighbours r1, r2 (gold B) under α = 0: layers 1, 2 → B; α = 1: the sample's A-heavy
        // layers give A 0.5 + 0.5 = 1.0 > B 0.7 → wrong. The search must settle on α = 0.
        let (rs, model, _) = try run { $0.alpha = .search }
        XCTAssertEqual(rs[0].alpha, 0)
        XCTAssertEqual(rs[0].c3poAnswer, "B")
        // 2 neighbour prefills (kept in the state cache: the second sample shares them) + 2 own
        // prefills; tails: 2 × (5 α × 2 neighbours + 1)
        XCTAssertEqual(model.prefills, 4)
        XCTAssertEqual(model.tails, 22)
    }

    func testModeFindingExcludesOverlaps() throws {
        // successful rows r1, r2 (B), r3 (C, but an overlap: similarity 1.0): mode = B-pathway
        let (rs, _, _) = try run { $0.method = .mode; $0.alpha = .fixed(0); $0.k = 1 }
        XCTAssertEqual(rs[0].c3poAnswer, "B")
    }

    func testTaskMethodUsesVotedTaskPathway() throws {
        let tw = TaskWeights(tasks: ["t1": .init(count: 2, alpha: 0, bandwidth: 0.3, criticalLayers: [1, 2], coreExperts: 4,
                                                 pathway: [[0.1, 0.1, 0.1, 0.7], [0.1, 0.1, 0.1, 0.7]])])
        // voted task t1 (both neighbours), α = 0 from the index: layers 1, 2 → D (1.4) > A (0.7)
        let (rs, _, _) = try run({ $0.method = .task }, weights: tw)
        XCTAssertEqual(rs[0].c3poAnswer, "D")
        XCTAssertEqual(rs[0].alpha, 0)
        XCTAssertThrowsError(try run { $0.method = .task }) { e in XCTAssertTrue("\(e)".contains("task_weights"), "\(e)") }
    }

    func testRandomNeighboursAreSuccessfulDistinctSeededAndNotTheNearest() throws {
        // 40 successful references on a circle, 10 failed ones right next to the query, one overlap.
        var refs: [ReferenceRecord] = [], emb: [Float] = []
        for i in 0..<51 {
            let angle = i < 40 ? Float(i + 1) * 0.07 : (i < 50 ? 0.01 : 0)
            refs.append(.init(id: "r\(i)", task: "t", question: "r\(i)", gold: "A", correct: i < 40 || i == 50))
            emb += [cos(angle), sin(angle)]
        }
        let paths = [Float](repeating: 0.25, count: 51 * 3 * 4)
        let pool = try ReferencePool(references: refs, embeddings: emb, dimension: 2, pathways: paths, layers: 3, experts: 4)
        let query: [Float] = [1, 0, 1, 0]  // two identical queries: different draws (seeded per query index)
        let a = pool.randomNeighbors(query, k: 5, maxSimilarity: 0.95, seed: 7)
        let b = pool.randomNeighbors(query, k: 5, maxSimilarity: 0.95, seed: 7)
        XCTAssertEqual(a, b, "the same seed draws the same neighbours")
        XCTAssertNotEqual(a, pool.randomNeighbors(query, k: 5, maxSimilarity: 0.95, seed: 8))
        XCTAssertNotEqual(a[0].map(\.row), a[1].map(\.row), "each query gets its own draw")
        let nearest = pool.search(query, k: 5, maxSimilarity: 0.95)
        for (draw, near) in zip(a, nearest) {
            XCTAssertEqual(draw.count, 5)
            XCTAssertEqual(Set(draw.map(\.row)).count, 5, "drawn without replacement")
            XCTAssertTrue(draw.allSatisfy { refs[$0.row].correct && $0.row != 50 }, "successful, non-overlapping references only")
            XCTAssertTrue(draw.allSatisfy { $0.similarity <= 0.95 })
            for h in draw { XCTAssertEqual(h.similarity, emb[2 * h.row], accuracy: 1e-6, "the true similarity is kept") }
            XCTAssertEqual(draw.map(\.similarity), draw.map(\.similarity).sorted(by: >))
            XCTAssertNotEqual(draw.map(\.row), near.map(\.row))
        }
        // The runner refuses the ablation where it has no meaning.
        XCTAssertThrowsError(try run { $0.method = .mode; $0.neighborDraw = .random }) { e in
            XCTAssertTrue("\(e)".contains("random neighbours"), "\(e)")
        }
        let (rs, _, _) = try run { $0.neighborDraw = .random; $0.alpha = .fixed(0) }
        XCTAssertEqual(Set(rs[0].neighbors.map(\.id)), ["r1", "r2"], "only r1, r2 are successful and not overlaps")
    }

    func testOracleFindsGoldAndSaysWhatItIs() throws {
        let (rs, _, ov) = try run { $0.method = .oracle }
        XCTAssertEqual(rs[0].c3poAnswer, "B")
        XCTAssertNotNil(ov["q1"])
        XCTAssertTrue(rs[0].method.contains("upper bound"))
        XCTAssertTrue(RunSummary(results: rs, method: .oracle).method.contains("uses gold answers"))
    }

    func testIndexWithOtherShapeIsRefused() throws {
        let pool = try ReferencePool(references: [], embeddings: [], dimension: 2, pathways: [], layers: 2, experts: 4)
        XCTAssertThrowsError(try C3PORunner(model: makeModel(), embedder: embedder, pool: pool, taskWeights: nil, options: RunnerOptions())) { e in
            XCTAssertTrue("\(e)".contains("2 layers"), "\(e)")
        }
    }

    func testHyperParametersFromNeighbourTasks() {
        let tw = TaskWeights(tasks: ["a": .init(count: 1, alpha: 0, bandwidth: 0.2, criticalLayers: [0], coreExperts: 1),
                                     "b": .init(count: 1, alpha: 1, bandwidth: 0.4, criticalLayers: [0], coreExperts: 1)])
        // weights 0.6 (a), 0.2 (b): α = 0.2/0.8 = 0.25, h = (0.6·0.2 + 0.2·0.4)/0.8 = 0.25
        let h = tw.hyperParameters(neighbors: [("a", 0.6), ("b", 0.2)])
        XCTAssertEqual(h.alpha, 0.25, accuracy: 1e-6)
        XCTAssertEqual(h.bandwidth, 0.25, accuracy: 1e-6)
        // unknown task → documented defaults
        XCTAssertEqual(tw.hyperParameters(neighbors: [("z", 0.5)]).alpha, MixingDefaults.alpha)
    }
}
