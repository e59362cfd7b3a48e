import ArgumentParser
import C3POCore
import C3POModel
import Foundation

/// `c3po-apply inspect`: one forward pass, with its tokens, top logits and last-position routing.
public struct InspectCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Run one prompt through the model: tokens, top logits, and the last position's router distribution per layer."
    )

    @OptionGroup public var modelOptions: ModelOptions

    @Option(name: .long, help: "The prompt text.")
    public var text: String

    @Option(name: .long, help: ArgumentHelp("Routing override for the last position in the official {\"layers\": [...]} form.", valueName: "file"))
    public var routing: String?

    @Flag(name: .long, help: "Print {\"token_ids\", \"logits\" (full vocabulary, last position), \"router_probs\" (per decoder layer, last position; null for a dense layer)} as JSON.")
    public var json = false

    @Option(name: .long, help: "How many top logits and top experts per layer to print.")
    public var top = 5

    public init() {}

    public func validate() throws {
        guard top > 0 else { throw ValidationError("--top must be positive") }
    }

    public func run() throws {
        let model = try modelOptions.load()
        var override: RoutingOverride?
        if let routing {
            let url = URL(fileURLWithPath: routing)
            guard let data = try? Data(contentsOf: url) else { throw FileError.cannotOpen(url, "cannot read") }
            override = try RoutingOverride(officialJSON: data, layers: model.layerCount, experts: model.expertCount, source: url.path)
        }
        let ids = try model.encode(text)
        let state = try model.prefill(ids, override: override)
        if json {
            let routed = Set(model.routedLayers)
            let obj: [String: Any] = [
                "token_ids": ids,
                "logits": state.logits.map(Double.init),
                "router_probs": state.routerProbs.enumerated().map { l, p -> Any in routed.contains(l) ? p.map(Double.init) : NSNull() },
            ]
            let data = try JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys])
            FileHandle.standardOutput.write(data)
            print()
            return
        }
        let family = model.identity.family.map { "\($0), " } ?? ""
        print("model: \(model.identity.id) (\(family)\(model.layerCount) layers, \(model.expertCount) experts, top-\(model.topK))")
        print("tokens (\(ids.count)):")
        for id in ids { print("  \(id)\t\((model.tokenText(id) ?? "").debugDescription)") }
        print("top logits at the last position:")
        for i in topIndices(state.logits, top) {
            print(String(format: "  %6d  %10.4f  %@", i, state.logits[i], (model.tokenText(i) ?? "").debugDescription))
        }
        print("router distribution at the last position (before any override):")
        let routed = Set(model.routedLayers)
        for (l, p) in state.routerProbs.enumerated() {
            guard routed.contains(l) else { print("  layer \(l): dense (no router)"); continue }
            let parts = topIndices(p, min(top, p.count)).map { String(format: "expert_%d %.4f", $0, p[$0]) }
            print("  layer \(l)\(override?.layers[l] != nil ? " (overridden)" : ""): " + parts.joined(separator: ", "))
        }
    }

    func topIndices(_ v: [Float], _ n: Int) -> [Int] {
        Array(v.indices.sorted { v[$0] > v[$1] || (v[$0] == v[$1] && $0 < $1) }.prefix(n))
    }
}
