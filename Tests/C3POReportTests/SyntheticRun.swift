import C3POCore
import C3POIndex
import Foundation

/// A made-up set of runs on one test set, written as `c3po-apply --out` JSONL files plus the
/// parts of an index folder the report reads (manifest, records, pathways), so the report
/// is tested on the files it reads in use, at any size.
struct SyntheticRun {
    var questions = 30
    var tasks = ["alpha", "beta", "gamma"]
    var layers = 4
    var experts = 8
    var criticalLayers = [2, 3]
    var references = 40
    var k = 3
    var coreExperts: Int? = 4
    /// Share of the questions the base gets wrong.
    var baseWrong = 0.3
    /// Runs: label, method name as written in the rows, share of base-wrong questions it
    /// fixes, share of base-right ones it breaks.
    var runs: [(label: String, method: String, fixes: Double, breaks: Double)] = [
        ("none", "none", 0, 0), ("kernel", "kernel", 0.6, 0.1), ("neighbors", "neighbors", 0.5, 0.2),
        ("oracle", "oracle (uses gold answers: upper bound, analysis only)", 1, 0),
    ]
    /// Distinct pathway rows the rows are drawn from (keeps generation fast at any size).
    var distinctRows = 64

    /// A deterministic generator (the test data must not change between runs).
    typealias Rand = SplitMix64

    /// Router-like distributions: a softmax with a few boosted experts (peaky, as trained
    /// routers are), each as a JSON array literal and as floats.
    func pathwayRows(_ rng: inout Rand) -> [(json: String, values: [Float])] {
        (0..<distinctRows).map { _ in
            var logits = (0..<experts).map { _ in (rng.uniform() - 0.5) * 3 }
            for _ in 0..<min(8, experts) { logits[rng.below(experts)] += 2.5 }
            let m = logits.max() ?? 0
            let ex = logits.map { Foundation.exp($0 - m) }
            let total = ex.reduce(0, +)
            let values = ex.map { Float($0 / total) }
            return ("[" + values.map { "\($0)" }.joined(separator: ",") + "]", values)
        }
    }

    struct Written {
        var directory: URL
        var runFiles: [URL]
        var index: URL
    }

    /// Writes the runs and the index under a fresh temporary folder.
    func write(seed: UInt64 = 1) throws -> Written {
        var rng = Rand(seed: seed)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-report-\(UUID().uuidString)")
        let indexDir = dir.appendingPathComponent("index")
        try FileManager.default.createDirectory(at: indexDir, withIntermediateDirectories: true)
        let rows = pathwayRows(&rng)

        // The index: records and pathways ([references, layers, experts]).
        var records = Data()
        var pathways: [Float] = []
        pathways.reserveCapacity(references * layers * experts)
        var perTask: [String: Int] = [:]
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        for r in 0..<references {
            let task = tasks[r % tasks.count]
            perTask[task, default: 0] += 1
            let rec = ReferenceRecord(row: r, id: "ref-\(r)", task: task, question: "Reference question \(r) about \(task)?", gold: "B",
                                      modelAnswer: "B", correct: true, source: "synthetic.jsonl", prompt: nil)
            records.append(try encoder.encode(rec)); records.append(0x0a)
            for _ in 0..<layers { pathways.append(contentsOf: rows[rng.below(rows.count)].values) }
        }
        try records.write(to: indexDir.appendingPathComponent(IndexFolder.recordsFile))
        try NPY.write(float32: pathways, shape: [references, layers, experts], to: indexDir.appendingPathComponent(IndexFolder.pathwaysFile))
        let manifest = IndexManifest(created: "2026-12-01T00:00:00Z", embedder: .init(id: "synthetic", dimension: 4), model: nil,
                                     layers: layers, experts: experts, criticalLayers: criticalLayers, factory: "Flat",
                                     count: references, tasks: perTask, sources: [], filters: .init(), mixing: .defaults)
        try encoder.encode(manifest).write(to: indexDir.appendingPathComponent(IndexFolder.manifestFile))

        // Per question: base correctness and neighbours, shared by every run.
        struct Q { var id: String; var task: String; var baseRight: Bool; var nb: [(Int, Float)]; var base: [Int]; var draw: [Double] }
        var qs: [Q] = []
        for i in 0..<questions {
            let nb = (0..<k).map { _ in (rng.below(references), Float(0.5 + 0.45 * rng.uniform())) }.sorted { $0.1 > $1.1 }
            qs.append(Q(id: "q-\(i)", task: tasks[i % tasks.count], baseRight: rng.uniform() >= baseWrong, nb: nb,
                        base: (0..<criticalLayers.count).map { _ in rng.below(rows.count) }, draw: runs.map { _ in rng.uniform() }))
        }
        var files: [URL] = []
        for (ri, run) in runs.enumerated() {
            var text = ""
            text.reserveCapacity(questions * (experts * 24 * criticalLayers.count + 400))
            for q in qs {
                let right = q.baseRight ? q.draw[ri] >= run.breaks : q.draw[ri] < run.fixes
                let usesNeighbours = run.method == "kernel" || run.method == "neighbors"
                let base = zip(criticalLayers, q.base).map { "\"\($0.0)\":\(rows[$0.1].json)" }.joined(separator: ",")
                var line = "{\"alpha\":0,\"base_answer\":\"\(q.baseRight ? "B" : "A")\",\"base_correct\":\(q.baseRight),"
                line += "\"base_pathway\":{\(base)},"
                if run.method != "none" && right != q.baseRight || usesNeighbours {
                    let mixed = zip(criticalLayers, q.base).map { "\"\($0.0)\":\(rows[($0.1 + 1 + ri) % rows.count].json)" }.joined(separator: ",")
                    line += "\"c3po_pathway\":{\(mixed)},"
                }
                line += "\"c3po_answer\":\"\(right ? "B" : "A")\",\"c3po_correct\":\(right),"
                if let c = coreExperts, run.method == "kernel" {
                    line += "\"core_experts\":{" + criticalLayers.map { "\"\($0)\":[" + (0..<c).map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "},"
                }
                line += "\"critical_layers\":[\(criticalLayers.map(String.init).joined(separator: ","))],\"gold\":\"B\",\"id\":\"\(q.id)\",\"method\":\"\(run.method)\","
                let neighbours = usesNeighbours
                    ? q.nb.map { "{\"id\":\"ref-\($0.0)\",\"similarity\":\($0.1),\"task\":\"\(tasks[$0.0 % tasks.count])\"}" }.joined(separator: ",") : ""
                line += "\"neighbors\":[\(neighbours)],\"question\":\"What is question \(q.id) <of> \(q.task)?\","
                let sb = 0.004 + 0.001 * Double(q.id.count % 3)
                line += "\"seconds_base\":\(sb),\"seconds_c3po\":\(run.method == "none" ? sb : sb * 5),\"task\":\"\(q.task)\"}\n"
                text += line
            }
            let url = dir.appendingPathComponent("\(run.label).jsonl")
            try Data(text.utf8).write(to: url)
            files.append(url)
        }
        return Written(directory: dir, runFiles: files, index: indexDir)
    }
}
