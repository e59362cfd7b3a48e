import Foundation

/// The official C3PO pathway form, `{"layers": [{"layer": l, "routing_weights": {"expert_<i>": w}}]}`
/// (reference.zip's `last_token_routing`, the published re-mixing code's custom routing,
/// `c3po-apply --emit-weights`, `c3po-apply inspect --routing`). One parser and one set
/// of rules for every reader:
/// - every listed layer once; every expert `expert_0..expert_<E-1>` once per layer;
/// - weights finite, non-negative, a layer's weights summing to 1 within `sumTolerance`.
///
/// A reference record lists every layer (`layers: .all`, the count given by the list);
/// an override lists some layers of a known model (`layers: .subset(of: n)`).
public enum OfficialRouting {
    public static let sumTolerance = 1e-3

    /// Why a routing is unusable (the caller adds the file and record).
    public struct Problem: Swift.Error, CustomStringConvertible {
        public let reason: String
        public init(_ reason: String) { self.reason = reason }
        public var description: String { reason }
    }

    /// One entry of `layers` as parsed: expert indices and weights in document order
    /// (`routing_weights` is streamed, no dictionary is built).
    public struct Layer: Sendable {
        public var layer: Int?
        public var hasWeights = false
        /// Expert index of each `expert_<i>` key; `Int.min` for a key of another form.
        public var experts: [Int] = []
        public var weights: [Double] = []
        /// The first key not of the form `expert_<i>`, for the message.
        public var badKey: String?
        public init() {}
    }

    /// Which layers must be listed.
    public enum LayerRule: Sendable {
        /// Exactly 0..<n, n the number of entries (a reference record).
        case all
        /// Any layers of 0..<n, each at most once (an override of an n-layer model).
        case subset(of: Int)
    }

    // MARK: parsing

    /// Expert index of a `routing_weights` key: `expert_<i>`, `i` a decimal integer
    /// written as Swift/Python print it (no sign, no leading zero); a negative `i` is
    /// returned to be reported out of range. nil for any other form.
    static func expertIndex(_ key: JSONScanner.Key) -> Int? {
        // The byte-level path below is the hot one; escaped keys take the shared rule.
        guard !key.hasEscapes else { return ExpertKey.index(key.string) }
        let raw = key.raw
        let prefix: StaticString = "expert_"
        guard raw.count > 7, raw.count <= 7 + 18, memcmp(raw.baseAddress!, prefix.utf8Start, 7) == 0 else { return nil }
        var i = 7
        let negative = raw[i] == UInt8(ascii: "-")
        if negative { i += 1 }
        guard i < raw.count, !(raw[i] == UInt8(ascii: "0") && (raw.count - i > 1 || negative)) else { return nil }
        var e = 0
        while i < raw.count {
            let d = raw[i] &- UInt8(ascii: "0")
            guard d < 10 else { return nil }
            e = e * 10 + Int(d)
            i += 1
        }
        return negative ? -e : e
    }

    /// Parses the routing object at the scanner (`{"layers": [...]}`), named `field` in
    /// messages ("last_token_routing"; "" for a document that is the object itself). The
    /// first problem of shape is kept in `problem`, the value read on; JSON syntax errors
    /// are thrown. nil when there is no usable `layers` list.
    public static func parse(_ s: inout JSONScanner, field: String, problem: inout String?) throws -> [Layer]? {
        let prefix = field.isEmpty ? "" : field + "."
        guard try s.expect(.object, field: field.isEmpty ? "(top level)" : field, problem: &problem) else { return nil }
        var c = try s.beginObject()
        var result: [Layer]?
        while let key = try s.nextKey(&c) {
            guard key.equals("layers") else { try s.skipValue(); continue }
            guard try s.expect(.array, field: prefix + "layers", problem: &problem) else { result = []; continue }
            var layers: [Layer] = []
            var a = try s.beginArray()
            while try s.nextElement(&a) {
                let index = layers.count
                var at: String { "\(prefix)layers[\(index)]" } // built only for a message
                var layer = Layer()
                defer { layers.append(layer) }
                guard try s.expect(.object, field: at, problem: &problem) else { continue }
                var o = try s.beginObject()
                while let k = try s.nextKey(&o) {
                    if k.equals("layer") {
                        layer.layer = nil
                        guard try s.expect(.number, field: at + ".layer", problem: &problem) else { layer.layer = -1; continue }
                        let v = try s.readDouble()
                        // An integral number (2 or 2.0) names a layer; anything else is refused.
                        if v.rounded() == v, abs(v) < 1e15 { layer.layer = Int(v) } else {
                            if problem == nil { problem = "field '\(at).layer' is not an integer (\(v))" }
                            layer.layer = -1
                        }
                    } else if k.equals("routing_weights") {
                        layer.hasWeights = true
                        layer.experts.removeAll(keepingCapacity: true); layer.weights.removeAll(keepingCapacity: true)
                        guard try s.expect(.object, field: at + ".routing_weights", problem: &problem) else { continue }
                        layer.experts.reserveCapacity(64); layer.weights.reserveCapacity(64)
                        var w = try s.beginObject()
                        while let ek = try s.nextKey(&w) {
                            let e = expertIndex(ek)
                            if e == nil && layer.badKey == nil { layer.badKey = ek.string }
                            guard try s.expect(.number, field: "\(at).routing_weights.\(ek.string)", problem: &problem) else { continue }
                            layer.experts.append(e ?? Int.min)
                            layer.weights.append(try s.readDouble())
                        }
                    } else {
                        try s.skipValue()
                    }
                }
                if layer.layer == nil, problem == nil { problem = "missing field '\(at).layer'" }
                if !layer.hasWeights, problem == nil { problem = "missing field '\(at).routing_weights'" }
            }
            result = layers
        }
        if result == nil, problem == nil { problem = "missing field '\(prefix)layers'" }
        return result
    }

    // MARK: the rules

    /// The checked routing, dense: layer → weights over all `experts`.
    public struct Dense: Sendable, Equatable {
        public var layers: [Int: [Float]]
        public var experts: Int
    }

    /// Applies the rules to parsed layers. `experts`: the model's expert count, or nil to
    /// take it from the widest layer (a reference record, checked against its first record
    /// by the caller).
    public static func check(_ layers: [Layer], experts known: Int?, layers rule: LayerRule,
                             tolerance: Double = sumTolerance) throws -> Dense {
        let listed = layers.count
        guard listed > 0 else {
            if case .all = rule { throw Problem("'last_token_routing.layers' is empty") }
            throw Problem("'layers' is empty")
        }
        // Keys first: a malformed or repeated key is named as such, not as a count mismatch.
        var seen = [Bool]() // by expert index, for indices in 0..<4096 (larger ones fail the range check below)
        for entry in layers {
            let layer = entry.layer ?? -1
            if let bad = entry.badKey { throw Problem("layer \(layer): key '\(bad)' is not expert_<i>") }
            seen.removeAll(keepingCapacity: true)
            seen.append(contentsOf: repeatElement(false, count: max(0, min(4096, (entry.experts.max() ?? 0) + 1))))
            for e in entry.experts where (0..<seen.count).contains(e) {
                guard !seen[e] else { throw Problem("layer \(layer): expert \(e) listed twice") }
                seen[e] = true
            }
        }
        // Unknown: the widest layer sets the expert count, so a layer with a missing key is the one named.
        let E = known ?? (layers.map(\.experts.count).max() ?? 0)
        guard E > 0 else { throw Problem("'last_token_routing.layers[*].routing_weights' are empty") }
        var dense: [Int: [Float]] = [:]
        for (i, entry) in layers.enumerated() {
            let layer = entry.layer ?? -1
            switch rule {
            case .all:
                guard (0..<listed).contains(layer) else {
                    throw Problem("'last_token_routing.layers[\(i)].layer' is \(layer), outside 0..<\(listed) (\(listed) layers listed)")
                }
            case .subset(let n):
                guard (0..<n).contains(layer) else { throw Problem("layers[\(i)]: layer \(layer) outside 0..<\(n) (the model's layers)") }
            }
            guard dense[layer] == nil else { throw Problem("layer \(layer) listed twice") }
            if known != nil, let e = entry.experts.first(where: { !(0..<E).contains($0) }) {
                throw Problem("layer \(layer): 'expert_\(e)' outside expert_0..expert_\(E - 1)")
            }
            guard entry.experts.count == E else {
                throw Problem(known == nil
                    ? "layer \(layer) has \(entry.experts.count) experts, other layers have \(E) (missing expert)"
                    : "layer \(layer) lists \(entry.experts.count) of the \(E) experts (every expert once)")
            }
            var w = [Float](repeating: 0, count: E)
            var sum = 0.0
            for (e, x) in zip(entry.experts, entry.weights) {
                guard (0..<E).contains(e) else {
                    throw Problem("layer \(layer): 'expert_\(e)' outside expert_0..expert_\(E - 1) (missing expert)")
                }
                guard x.isFinite else { throw Problem("layer \(layer): weight of 'expert_\(e)' is not finite (\(x))") }
                guard x >= 0 else { throw Problem("layer \(layer): weight of 'expert_\(e)' is negative (\(x))") }
                sum += x
                w[e] = Float(x)
            }
            guard abs(sum - 1) <= tolerance else {
                throw Problem("layer \(layer): routing weights sum to \(sum), not 1 (tolerance \(tolerance))")
            }
            dense[layer] = w
        }
        return Dense(layers: dense, experts: E)
    }

    /// A whole document in the official form (an override file), checked against a model
    /// of `layerCount` layers × `experts` experts.
    public static func read(document data: Data, layerCount: Int, experts: Int) throws -> [Int: [Float]] {
        var problem: String?
        let layers: [Layer]?
        do {
            layers = try data.withUnsafeBytes { raw -> [Layer]? in
                var s = JSONScanner(raw)
                let l = try parse(&s, field: "", problem: &problem)
                try s.finish()
                return l
            }
        } catch let e as JSONScanner.Error {
            throw Problem("not valid JSON: \(e)")
        }
        if let problem { throw Problem(problem) }
        return try check(layers ?? [], experts: experts, layers: .subset(of: layerCount)).layers
    }

    /// The official form of `layers` (layer → weights over all experts), layers ascending,
    /// each layer's weights normalised to sum 1 (as an override applies them), every expert
    /// listed: what `read(document:)` accepts back.
    public static func object(_ layers: [Int: [Float]]) -> [String: Any] {
        let items: [[String: Any]] = layers.keys.sorted().map { l in
            let w = layers[l] ?? []
            let sum = w.reduce(0, +)
            var weights: [String: Double] = [:]
            for (e, v) in w.enumerated() { weights[ExpertKey.name(e)] = Double(sum > 0 ? v / sum : v) }
            return ["layer": l, "routing_weights": weights]
        }
        return ["layers": items]
    }
}
