import C3POCore
import Foundation

// The contract between the MoE engine (one file per architecture) and the C3PO
// runtime. The runtime never sees weights: it reads the last position's routing,
// hands back a re-mixed pathway, and asks for the tail of the network again.

/// Replacement routing distributions for the *last prompt position*, per layer.
/// Applied as the published C3PO code does: the layer's softmax distribution at the
/// last position is replaced by `weights / sum(weights)`, top-k is taken from it,
/// and the k weights are renormalised only where the config says (`norm_topk_prob`).
public struct RoutingOverride: Sendable, Equatable {
    /// layer → weights over all experts of that layer (non-negative, finite, not all zero).
    public var layers: [Int: [Float]]

    public init(layers: [Int: [Float]] = [:]) { self.layers = layers }

    public var isEmpty: Bool { layers.isEmpty }
    /// The lowest overridden layer: where tail re-evaluation has to start.
    public var firstLayer: Int? { layers.keys.min() }
}

/// One full pass over a prompt: what the runtime reads, plus the cached state that
/// makes re-evaluating the last position's tail cheap.
public protocol PrefillState: AnyObject {
    var tokens: [Int] { get }
    /// Logits over the vocabulary at the last position. [vocab]
    var logits: [Float] { get }
    /// The router's softmax distribution at the last position, per layer, as computed
    /// in this pass (before any override of that layer). [layers][experts]
    var routerProbs: [[Float]] { get }
    /// Bytes the state holds (for caches' budgets).
    var byteCount: Int { get }
    /// The same state with only what tail work from `layer` up needs (tail re-evaluation, the
    /// tail gradient, from `layer` or above): the smaller thing to keep in a cache.
    func keepingTail(from layer: Int) -> PrefillState
}

extension PrefillState {
    public var byteCount: Int { 4 * (logits.count + routerProbs.reduce(0) { $0 + $1.count }) + 8 * tokens.count }
    public func keepingTail(from layer: Int) -> PrefillState { self }
}

/// A Mixture-of-Experts causal LM whose last-position routing can be read and rewritten.
public protocol RoutedMoEModel: AnyObject {
    var identity: ModelIdentity { get }
    var layerCount: Int { get }
    var expertCount: Int { get }
    /// Experts used per token (top-k).
    var topK: Int { get }
    var vocabularySize: Int { get }
    /// Longest prompt the model accepts, in tokens.
    var maxContext: Int { get }
    /// The decoder layers that have a router (the others are dense: their `routerProbs` row is
    /// all zeros and an override naming them is refused). Layer indices are decoder-layer
    /// indices everywhere.
    var routedLayers: [Int] { get }

    /// Token ids of `text` as the checkpoint's tokenizer encodes it.
    func encode(_ text: String) throws -> [Int]
    /// The single token id of each label as it follows "Answer:" (" A", " B", ...);
    /// throws if a label is not exactly one token.
    func labelTokenIDs(_ labels: [String]) throws -> [Int]
    /// The text of one token, for display (nil when the tokenizer cannot decode).
    func tokenText(_ id: Int) -> String?

    /// Full prefill of `tokens`, with `override` applied at the last position.
    func prefill(_ tokens: [Int], override: RoutingOverride?) throws -> PrefillState

    /// A prefill that keeps only what tail work from `fromLayer` up needs (re-evaluation, the tail
    /// gradient, `snapshot`), skipping what feeds nothing else; its logits and routing may be empty.
    /// Equal, for that work, to `prefill(tokens, override: nil).keepingTail(from: fromLayer)`.
    func prefillTail(_ tokens: [Int], fromLayer: Int) throws -> PrefillState

    /// Re-runs only the last position from layer `fromLayer` upward with `override`,
    /// reusing `state`'s activations below `fromLayer` and the keys/values of earlier
    /// positions. Equal to `prefill(state.tokens, override:)` when `override` touches
    /// no layer below `fromLayer`. Returns the logits of `rows` (all if nil).
    func reevaluateTail(_ state: PrefillState, fromLayer: Int, override: RoutingOverride?, rows: [Int]?) throws -> [Float]

    /// The cross-entropy of `rows[target]` among the logits of `rows` at the last position with
    /// `override` applied, and its exact gradient with respect to the override's weights, by one
    /// forward and one backward pass of the last position from `override.firstLayer` up (the
    /// earlier positions' keys and values, and the residual below that layer, from `state`).
    func tailGradient(_ state: PrefillState, override: RoutingOverride, rows: [Int], target: Int) throws -> TailGradient

    /// `tailGradient` of several prompts, each under its own override (all naming the same layers),
    /// as one batch: each weight is read once, and an expert several rows choose runs once over
    /// them. With `gradient` false only the forward runs (losses and logits, `omega` empty). A nil
    /// target makes its row logits only: loss 0, `omega` empty, and nothing flows back from it.
    func tailGradients(_ states: [PrefillState], overrides: [RoutingOverride], rows: [[Int]], targets: [Int?], gradient: Bool) throws -> [TailGradient]

    /// One step of decoding with a KV cache: `token` appended after `state`'s tokens, every
    /// layer run at the new position only (the earlier positions' keys and values from the
    /// cache), `override` applied at that position. The returned state's logits and routing
    /// are the new position's; it can be decoded from again.
    func decode(_ state: PrefillState, token: Int, override: RoutingOverride?) throws -> PrefillState

    /// What tail work from `fromLayer` up needs of `state`, as plain arrays (what `c3po-index
    /// build --cache-states` stores per reference), and the state made again from it. A restored
    /// state serves tail work only (re-evaluation, the tail gradient, from `fromLayer` or above):
    /// its logits and routing are empty.
    func snapshot(_ state: PrefillState, fromLayer: Int) throws -> TailSnapshot
    func restore(_ snapshot: TailSnapshot) throws -> PrefillState

    /// The token ids that end generation (`eos_token_id` of generation_config.json, else of
    /// config.json); empty when the checkpoint names none.
    var endTokenIDs: Set<Int> { get }

    /// The text of `ids`, special tokens left out.
    func text(of ids: [Int]) -> String
}

extension RoutedMoEModel {
    public var routedLayers: [Int] { Array(0..<layerCount) }
    public func tokenText(_ id: Int) -> String? { nil }
    public func decode(_ state: PrefillState, token: Int, override: RoutingOverride?) throws -> PrefillState {
        throw ModelError.input("this model has no decoding step")
    }
    public var endTokenIDs: Set<Int> { [] }
    public func prefillTail(_ tokens: [Int], fromLayer: Int) throws -> PrefillState {
        try prefill(tokens, override: nil).keepingTail(from: fromLayer)
    }
    public func snapshot(_ state: PrefillState, fromLayer: Int) throws -> TailSnapshot {
        throw ModelError.input("this model's states cannot be stored")
    }
    public func restore(_ snapshot: TailSnapshot) throws -> PrefillState {
        throw ModelError.input("this model's states cannot be stored")
    }
    public func tailGradient(_ state: PrefillState, override: RoutingOverride, rows: [Int], target: Int) throws -> TailGradient {
        throw ModelError.input("this model has no tail gradient")
    }
    public func tailGradients(_ states: [PrefillState], overrides: [RoutingOverride], rows: [[Int]], targets: [Int?], gradient: Bool) throws -> [TailGradient] {
        guard overrides.count == states.count else { throw ModelError.input("tailGradients: \(states.count) states, \(overrides.count) overrides") }
        return try states.indices.map { i in
            guard let t = targets[i] else { throw ModelError.input("tailGradients: this model has no logits-only rows") }
            return try tailGradient(states[i], override: overrides[i], rows: rows[i], target: t)
        }
    }
    /// Every row under one override.
    public func tailGradients(_ states: [PrefillState], override: RoutingOverride, rows: [[Int]], targets: [Int?], gradient: Bool) throws -> [TailGradient] {
        try tailGradients(states, overrides: Array(repeating: override, count: states.count), rows: rows, targets: targets, gradient: gradient)
    }
    public func tailGradients(_ states: [PrefillState], override: RoutingOverride, rows: [[Int]], targets: [Int]) throws -> [TailGradient] {
        try tailGradients(states, override: override, rows: rows, targets: targets, gradient: true)
    }
    public func text(of ids: [Int]) -> String { ids.compactMap(tokenText).joined() }

    /// Greedy generation as transformers' `generate` does it with a KV cache: the prompt's
    /// prefill, then up to `maxNewTokens` argmax tokens, each step with `override` applied at
    /// its position (the published code's custom routing replaces the last position of every
    /// forward call); stops after an end token. Returns the generated ids (the end token
    /// included, as `generate` returns it).
    public func generate(_ prompt: [Int], maxNewTokens: Int, override: RoutingOverride?) throws -> [Int] {
        var state = try prefill(prompt, override: override)
        var out: [Int] = []
        let end = endTokenIDs
        while out.count < maxNewTokens {
            let logits = state.logits
            var best = 0
            for i in logits.indices where logits[i] > logits[best] { best = i }
            out.append(best)
            if end.contains(best) || out.count == maxNewTokens || prompt.count + out.count >= maxContext { break }
            state = try decode(state, token: best, override: override)
        }
        return out
    }
}
