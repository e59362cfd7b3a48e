import C3POCore
import Foundation

/// The official C3PO pathway form, `{"layers": [{"layer": l, "routing_weights": {"expert_<i>": w}}]}`
/// (as in reference.zip's `last_token_routing` and the published re-mixing code).
extension RoutingOverride {
    /// Parses and validates the official form against a model of `layers` × `experts`:
    /// every layer in range and given once, every key `expert_<i>` with i in range, weights
    /// finite, non-negative and not all zero. Experts a layer does not name weigh 0.
    public init(officialJSON data: Data, layers layerCount: Int, experts: Int, source: String = "routing") throws {
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw ModelError.override("\(source): not a JSON object")
        }
        try self.init(official: root, layers: layerCount, experts: experts, source: source)
    }

    public init(official root: [String: Any], layers layerCount: Int, experts: Int, source: String = "routing") throws {
        guard let list = root["layers"] as? [Any] else { throw ModelError.override("\(source): no 'layers' array") }
        var layers: [Int: [Float]] = [:]
        for (i, item) in list.enumerated() {
            let at = "\(source): layers[\(i)]"
            guard let entry = item as? [String: Any] else { throw ModelError.override("\(at) is not an object") }
            guard let n = entry["layer"] as? NSNumber, let l = Int(exactly: n.doubleValue) else {
                throw ModelError.override("\(at): 'layer' is not an integer")
            }
            guard l >= 0 && l < layerCount else { throw ModelError.override("\(at): layer \(l) out of range 0..<\(layerCount)") }
            guard layers[l] == nil else { throw ModelError.override("\(at): layer \(l) given twice") }
            guard let weights = entry["routing_weights"] as? [String: Any] else {
                throw ModelError.override("\(at) (layer \(l)): no 'routing_weights' object")
            }
            var w = [Float](repeating: 0, count: experts)
            for (key, value) in weights {
                guard let e = ExpertKey.index(key) else {
                    throw ModelError.override("layer \(l): key '\(key)' is not expert_<i>")
                }
                guard e >= 0 && e < experts else { throw ModelError.override("layer \(l): key '\(key)' out of range expert_0..expert_\(experts - 1)") }
                guard let num = value as? NSNumber else { throw ModelError.override("layer \(l): '\(key)' is not a number") }
                let x = num.doubleValue
                guard x.isFinite, x >= 0 else { throw ModelError.override("layer \(l): '\(key)' = \(x) is not finite and non-negative") }
                w[e] = Float(x)
            }
            guard w.contains(where: { $0 > 0 }) else { throw ModelError.override("layer \(l): all routing weights are zero") }
            layers[l] = w
        }
        self.init(layers: layers)
    }

    /// The official form as a JSON object: layers ascending, each layer's weights
    /// normalised to sum 1 (as the override semantics apply them).
    public func officialObject() -> [String: Any] {
        let items: [[String: Any]] = layers.keys.sorted().map { l in
            let w = layers[l] ?? []
            let sum = w.reduce(0, +)
            var weights: [String: Double] = [:]
            for (e, v) in w.enumerated() { weights[ExpertKey.name(e)] = Double(sum > 0 ? v / sum : v) }
            return ["layer": l, "routing_weights": weights]
        }
        return ["layers": items]
    }

    /// `officialObject()` serialised with sorted keys.
    public func officialJSON() throws -> Data {
        try JSONSerialization.data(withJSONObject: officialObject(), options: [.sortedKeys])
    }
}
