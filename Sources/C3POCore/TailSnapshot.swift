import Foundation

/// What tail work needs of one prefill from layer `fromLayer` up, as plain arrays: what the
/// engine's `snapshot`/`restore` exchange and what an index's stored states hold (StoredStates).
public struct TailSnapshot: Sendable, Equatable {
    public var tokens: [Int]
    public var fromLayer: Int
    /// Per layer from `fromLayer` up: the keys and values of every position, after norms,
    /// clipping and RoPE. [layers − fromLayer][tokens × kv heads · head dim]
    public var keys: [[Float]]
    public var values: [[Float]]
    /// Per layer from `fromLayer` up: the residual stream entering it at the last position.
    /// [layers − fromLayer][hidden]
    public var lastInputs: [[Float]]

    public init(tokens: [Int], fromLayer: Int, keys: [[Float]], values: [[Float]], lastInputs: [[Float]]) {
        self.tokens = tokens; self.fromLayer = fromLayer; self.keys = keys; self.values = values; self.lastInputs = lastInputs
    }
}
