import ArgumentParser
import C3POCore
import C3POModel
import Foundation

/// `c3po-apply inspect`: one forward pass, with its tokens, top logits and last-position routing.
public struct InspectCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Run one prompt through the model: tokens, top logits, and the last position's router distribution per layer.",
        discussion: """
            The prompt is taken exactly as given. In a shell, "\\n" inside double quotes is a backslash and an n, \
            not a line break: write the prompt with $'...\\n...' (bash, zsh), or put it in a file (--text-file FILE) \
            or on standard input (--text-file -). A --text holding a literal \\n and no line break is warned about.
            """
    )

    @OptionGroup public var modelOptions: ModelOptions

    @Option(name: .long, help: "The prompt, exactly (see the discussion for line breaks).")
    public var text: String?

    @Option(name: .customLong("text-file"),
            help: ArgumentHelp("Read the prompt from this file, '-' for standard input (UTF-8; one final line break, as editors write, is not part of the prompt).", valueName: "file"))
    public var textFile: String?

    @Option(name: .long, help: ArgumentHelp("Routing override for the last position in the official {\"layers\": [...]} form.", valueName: "file"))
    public var routing: PathArgument?

    @Flag(name: .long, help: "Print {\"token_ids\", \"logits\" (full vocabulary, last position), \"router_probs\" (per decoder layer, last position; null for a dense layer), \"warnings\"} as JSON.")
    public var json = false

    @Option(name: .long, help: ArgumentHelp("How many top logits and top experts per layer to print.", valueName: "n"))
    public var top = 5

    public init() {}

    public func validate() throws {
        guard top > 0 else { throw ValidationError("--top must be positive") }
        guard (text == nil) != (textFile == nil) else { throw ValidationError("give the prompt with exactly one of --text TEXT and --text-file FILE") }
    }

    /// The prompt and what is odd about it.
    func prompt() throws -> (text: String, warnings: [String]) {
        if let text {
            // A shell passes "a\nb" in double quotes as a backslash and an n.
            if text.contains("\\n") && !text.unicodeScalars.contains("\n") {
                return (text, ["--text holds a literal \\n (a backslash and an n) and no line break: the shell passed it as typed; "
                               + "for a line break write the prompt with $'...\\n...' or give it with --text-file"])
            }
            return (text, [])
        }
        let path = textFile ?? "-"
        let data: Data
        if path == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            data = try Data(contentsOf: try InputPaths.file(path, "prompt file"))
        }
        guard var s = String(data: data, encoding: .utf8) else { throw UsageError("\(path == "-" ? "standard input" : path): not valid UTF-8") }
        // One Character: "\r\n" is a single grapheme cluster.
        if s.last == "\n" || s.last == "\r\n" { s.removeLast() }
        guard !s.isEmpty else { throw UsageError("\(path == "-" ? "standard input" : path): the prompt is empty") }
        return (s, [])
    }

    public func run() throws {
        let (text, warnings) = try prompt()
        for w in warnings { StandardError.warning(w) }
        let model = try modelOptions.load()
        var override: RoutingOverride?
        if let routing {
            let url = routing.url
            guard let data = try? Data(contentsOf: url) else { throw FileError.cannotOpen(url, "cannot read") }
            override = try RoutingOverride(officialJSON: data, layers: model.layerCount, experts: model.expertCount, source: url.path)
        }
        let ids = try model.encode(text)
        let state = try model.prefill(ids, override: override)
        if json {
            let routed = Set(model.routedLayers)
            let obj: [String: Any] = [
                "warnings": warnings,
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
