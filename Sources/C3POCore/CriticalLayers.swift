/// The paper's *critical layers*: the layers whose routing is re-mixed (the last 5 of
/// OLMoE's 16). Defined once, for the index format and the re-mixing.
public enum CriticalLayers {
    public static let defaultCount = 5

    /// The last `count` of `routedLayers` (the layers that have a router: a dense layer has
    /// no routing to re-mix), or all of them when there are fewer; decoder-layer indices,
    /// ascending.
    public static func last(_ count: Int, of routedLayers: [Int]) -> [Int] {
        Array(routedLayers.sorted().suffix(max(0, count)))
    }
}
