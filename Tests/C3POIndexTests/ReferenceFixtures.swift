import C3POCore
import C3POEmbedding
import C3POIndex
import Foundation

/// Deterministic test embedder: a hashed bag of lower-cased words (FNV-1a), L2-normalised.
/// Identical texts give identical vectors; texts sharing no word are orthogonal-ish.
struct HashEmbedder: SentenceEmbedder {
    var identifier = "test/hashed-bag-of-words"
    var dimension = 64

    func embed(_ texts: [String], batchSize: Int, progress: ProgressReporter?) throws -> [Float] {
        var out = [Float](repeating: 0, count: texts.count * dimension) // [texts, dimension]
        for (i, t) in texts.enumerated() {
            for word in t.lowercased().split(whereSeparator: { !$0.isLetter && !$0.isNumber }) {
                var h: UInt64 = 0xcbf29ce484222325
                for b in word.utf8 { h = (h ^ UInt64(b)) &* 0x100000001b3 }
                out[i * dimension + Int(h % UInt64(dimension))] += 1
            }
            var s: Float = 0
            for j in 0..<dimension { s += out[i * dimension + j] * out[i * dimension + j] }
            if s == 0 { out[i * dimension] = 1; s = 1 }
            for j in 0..<dimension { out[i * dimension + j] /= s.squareRoot() }
        }
        progress?.update(texts.count)
        return out
    }
}

/// One record of the official format, written as Python's json.dump would (NaN allowed).
struct OfficialRecord {
    var caseID: String
    var question: String
    var gold = "A"
    var answer = "A"
    var correct = true
    /// [layers][experts] routing weights.
    var weights: [[Double]]
    /// Override the written weight text of (layer, expert), e.g. "NaN".
    var rawWeight: [String: String] = [:]
    /// Leave out expert keys of a layer, "layer:expert".
    var dropExpert: Set<String> = []

    var prompt: String {
        "Answer with only a single letter (A, B, C, or D) representing the correct option. Do not explain your reasoning. Just output the letter of the answer. Question: \(question)\n A. one\n B. two\n C. three\n D. four\nAnswer:"
    }

    func json() -> String {
        func q(_ s: String) -> String {
            let data = try? JSONSerialization.data(withJSONObject: [s], options: [.withoutEscapingSlashes])
            return String(decoding: data ?? Data(), as: UTF8.self).dropFirst().dropLast().description
        }
        let layers = weights.enumerated().map { l, row -> String in
            // Sorted by weight descending as the official files are: order carries no meaning.
            let order = row.indices.sorted { row[$0] > row[$1] }
            let pairs = order.compactMap { e -> String? in
                if dropExpert.contains("\(l):\(e)") { return nil }
                return "\"expert_\(e)\": \(rawWeight["\(l):\(e)"] ?? String(row[e]))"
            }
            return "{\"layer\": \(l), \"routing_weights\": {\(pairs.joined(separator: ", "))}}"
        }
        return """
        {"input_text": \(q(prompt)), "correct_answer": \(q(gold)), "model_answer": \(q(answer)), "is_correct": \(correct), \
        "generated_text": "A", "tokens": [1, 2, 3], "tokenizer": "allenai/OLMoE-1B-7B-0125-Instruct", \
        "last_token_routing": {"token_id": 3, "token_text": ":", "layers": [\(layers.joined(separator: ", "))]}}
        """
    }
}

enum Fixtures {
    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-index-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    /// A softmax-like distribution over `experts`, deterministic in `seed`.
    static func distribution(_ seed: Int, experts: Int) -> [Double] {
        var x = UInt64(seed &* 2654435761 &+ 12345)
        var w = (0..<experts).map { _ -> Double in
            x = x &* 6364136223846793005 &+ 1442695040888963407
            return exp(Double(x >> 40) / Double(1 << 24) * 4)
        }
        let s = w.reduce(0, +)
        w = w.map { $0 / s }
        return w
    }

    static func pathway(_ seed: Int, layers: Int = 4, experts: Int = 8) -> [[Double]] {
        (0..<layers).map { distribution(seed * 100 + $0, experts: experts) }
    }

    static func file(_ records: [OfficialRecord]) -> Data {
        Data(("{" + records.map { "\"\($0.caseID)\": \($0.json())" }.joined(separator: ",\n") + "}").utf8)
    }

    /// The standard small reference set: sciq 3 records (2 correct), openbookqa 2 (both correct).
    static let sciq: [OfficialRecord] = [
        OfficialRecord(caseID: "0", question: "What gas do plants absorb from the air for photosynthesis?", gold: "B", answer: "B", weights: pathway(1)),
        OfficialRecord(caseID: "1", question: "Which organ pumps blood through the human body?", gold: "C", answer: "A", correct: false, weights: pathway(2)),
        OfficialRecord(caseID: "2", question: "What is the boiling point of water at sea level in Celsius?", gold: "D", answer: "D", weights: pathway(3)),
    ]
    static let openbookqa: [OfficialRecord] = [
        OfficialRecord(caseID: "7", question: "A magnet attracts which kind of metal object?", gold: "A", answer: "A", weights: pathway(4)),
        OfficialRecord(caseID: "12", question: "Frogs lay their eggs in which habitat usually?", gold: "C", answer: "C", weights: pathway(5)),
    ]

    static func standardEntries() -> [(path: String, data: Data)] {
        [("README.txt", Data("reference records".utf8)),
         ("reference/instruct_sciq_correct_routing_results.json", file(sciq)),
         ("reference/instruct_openbookqa_correct_routing_results.json", file(openbookqa))]
    }

    static func archive(_ entries: [(path: String, data: Data)], in dir: URL, name: String = "reference.zip",
                        format: ArchiveWriter.Format = .zip) throws -> URL {
        let url = dir.appendingPathComponent(name)
        try ArchiveWriter.write(entries, to: url, format: format)
        return url
    }
}
