import C3POCore
import C3POEmbedding
import C3POModel
import Foundation

/// A `RoutedMoEModel` whose answer can be computed by hand: 3 layers × 4 experts, top-1,
/// no top-k renormalisation. A prompt's tokens are its UTF-8 bytes; its router
/// distributions come from `routes[prompt]` (uniform when absent). The label logit of
/// "A"/"B"/"C"/"D" (token ids 0...3) is Σ over layers of the weight expert 0/1/2/3
/// keeps after top-1 selection at the last position, so the answer is the expert that
/// collects the most top-1 weight over the layers.
final class ToyModel: RoutedMoEModel {
    final class State: PrefillState {
        let tokens: [Int]
        let logits: [Float]
        let routerProbs: [[Float]]
        init(tokens: [Int], logits: [Float], routerProbs: [[Float]]) {
            self.tokens = tokens; self.logits = logits; self.routerProbs = routerProbs
        }
    }
    struct ToyError: Error, CustomStringConvertible { var description: String }

    let identity = ModelIdentity(id: "toy", configSHA256: "00", layers: 3, experts: 4, topK: 1)
    let layerCount = 3, expertCount = 4, topK = 1, vocabularySize = 8
    let maxContext = 40
    var routes: [String: [[Float]]]
    private(set) var prefills = 0, tails = 0

    init(routes: [String: [[Float]]]) { self.routes = routes }

    func encode(_ text: String) throws -> [Int] { text.utf8.map { Int($0) } }

    func labelTokenIDs(_ labels: [String]) throws -> [Int] {
        try labels.map { l in
            guard let i = ["A", "B", "C", "D"].firstIndex(of: l) else { throw ToyError(description: "label '\(l)' is not one token") }
            return i
        }
    }

    /// Logits from the routing actually used per layer (override normalised, top-1 kept).
    func logits(_ used: [[Float]]) -> [Float] {
        var out = [Float](repeating: -10, count: vocabularySize)
        for j in 0..<4 { out[j] = 0 }
        for w in used {
            let s = w.reduce(0, +)
            let p = w.map { $0 / s }
            var best = 0
            for e in 1..<4 where p[e] > p[best] { best = e }
            out[best] += p[best]
        }
        return out
    }

    func router(_ tokens: [Int]) -> [[Float]] {
        let text = String(decoding: tokens.map { UInt8($0) }, as: UTF8.self)
        return routes[text] ?? Array(repeating: [0.25, 0.25, 0.25, 0.25], count: 3)
    }

    func prefill(_ tokens: [Int], override: RoutingOverride?) throws -> PrefillState {
        prefills += 1
        let r = router(tokens)
        let used = (0..<3).map { override?.layers[$0] ?? r[$0] }
        return State(tokens: tokens, logits: logits(used), routerProbs: r)
    }

    func reevaluateTail(_ state: PrefillState, fromLayer: Int, override: RoutingOverride?, rows: [Int]?) throws -> [Float] {
        tails += 1
        let r = state.routerProbs
        let used = (0..<3).map { l in l >= fromLayer ? (override?.layers[l] ?? r[l]) : r[l] }
        let all = logits(used)
        return rows.map { $0.map { all[$0] } } ?? all
    }
}

/// Embeds texts through a fixed table (unit vectors given by the test).
struct TableEmbedder: SentenceEmbedder {
    let identifier = "table"
    let dimension = 2
    let table: [String: [Float]]
    func embed(_ texts: [String], batchSize: Int, progress: ProgressReporter?) throws -> [Float] {
        texts.flatMap { table[$0] ?? [0, 1] }
    }
}
