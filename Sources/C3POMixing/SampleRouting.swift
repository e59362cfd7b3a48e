import C3POModel
import Foundation

// What `--out` records of a sample's routing, for the report (`c3po-apply report`):
// the critical layers' base and re-mixed pathways at the last prompt position and the
// core experts the method re-weighted. Field meanings are in README.md ("The --out rows").

extension SampleResult {
    /// Fills `critical_layers`, `base_pathway`, `c3po_pathway` and `core_experts`.
    /// `base` is the router's own distribution ([layers][experts], `PrefillState.routerProbs`);
    /// `override` the routing the C3PO answer was computed with (nil: the base routing was
    /// kept, and `c3po_pathway` stays absent); `coreExperts` the number of experts per layer
    /// the method re-weights, nil for methods that re-weight all of them or none.
    public mutating func recordRouting(base: [[Float]], override: RoutingOverride?, criticalLayers: [Int], coreExperts: Int?) {
        let layers = criticalLayers.filter { $0 >= 0 && $0 < base.count }
        self.criticalLayers = layers
        var basePath: [Int: [Float]] = [:]
        for l in layers { basePath[l] = base[l] }
        basePathway = basePath
        if let override, !override.isEmpty {
            var mixed: [Int: [Float]] = [:]
            for l in layers { mixed[l] = override.layers[l] ?? base[l] }
            c3poPathway = mixed
        } else {
            c3poPathway = nil
        }
        if let n = coreExperts {
            var core: [Int: [Int]] = [:]
            for l in layers { core[l] = CoreExperts.select(base[l], count: n) }
            self.coreExperts = core
        } else {
            self.coreExperts = nil
        }
    }
}
