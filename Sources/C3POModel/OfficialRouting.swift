import C3POCore
import Foundation

/// An override in the official C3PO pathway form (`OfficialRouting`, C3POCore: one parser
/// and one set of rules for archives, override files and `--emit-weights`).
extension RoutingOverride {
    /// Parses and checks the official form against a model of `layers` × `experts`: each
    /// listed layer in range and given once, every expert `expert_0..expert_<E-1>` once, the
    /// weights finite, non-negative and summing to 1 within 1e-3. Layers not listed keep the
    /// router's routing.
    public init(officialJSON data: Data, layers layerCount: Int, experts: Int, source: String = "routing") throws {
        do {
            self.init(layers: try OfficialRouting.read(document: data, layerCount: layerCount, experts: experts))
        } catch let p as OfficialRouting.Problem {
            throw ModelError.override("\(source): \(p.reason)")
        }
    }

    /// The official form as a JSON object: layers ascending, every expert listed, each
    /// layer's weights normalised to sum 1 (as the override semantics apply them).
    public func officialObject() -> [String: Any] { OfficialRouting.object(layers) }

    /// `officialObject()` serialised with sorted keys.
    public func officialJSON() throws -> Data {
        try JSONSerialization.data(withJSONObject: officialObject(), options: [.sortedKeys])
    }
}
