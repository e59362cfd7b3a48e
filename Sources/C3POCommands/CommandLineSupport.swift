import ArgumentParser
import C3POCore
import C3POIndex
import Foundation

/// A mistake in what the user gave, said in their terms (the path as typed).
public struct UsageError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A path option: the text as the user typed it (for messages) and its URL, made when the
/// command line is parsed.
public struct PathArgument: ExpressibleByArgument, CustomStringConvertible, Sendable, Equatable {
    public let typed: String
    public let url: URL

    public init?(argument: String) {
        guard !argument.isEmpty else { return nil }
        typed = argument
        url = URL(fileURLWithPath: argument)
    }

    public var description: String { typed }
    public var defaultValueDescription: String { typed }
}

extension ShardSpec {
    /// `--shard K/N|auto|auto/N` of `c3po-index build` and `c3po-apply`: nil when not given.
    static func option(_ text: String?) throws -> ShardSpec? {
        guard let text else { return nil }
        do { return try ShardSpec(parsing: text) } catch { throw ValidationError("--shard: \(error)") }
    }
}

/// Paths checked before the loaders see them, so that a missing folder is reported as
/// the folder the user named, not as the first file a loader looks for inside it.
/// p50 / p99 / mean of per-item latencies in milliseconds (nearest-rank percentiles; 0 when there
/// are none), as `query --report-latency` and `embed --report-latency` print them.
struct LatencySummary {
    let p50: Double, p99: Double, mean: Double

    init(milliseconds: [Double]) {
        let times = milliseconds.sorted()
        func rank(_ p: Double) -> Double { times.isEmpty ? 0 : times[min(times.count - 1, max(0, Int((p * Double(times.count)).rounded(.up)) - 1))] }
        p50 = rank(0.5)
        p99 = rank(0.99)
        mean = times.reduce(0, +) / Double(max(times.count, 1))
    }
}

enum InputPaths {
    /// `path` must be an existing folder; `what` names it ("index folder"), `hint` says how to get one.
    static func folder(_ path: String, _ what: String, hint: String? = nil) throws -> URL {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw UsageError("\(path): no such \(what)" + (hint.map { " (\($0))" } ?? ""))
        }
        guard isDirectory.boolValue else { throw UsageError("\(path): not a folder (expected the \(what))") }
        return URL(fileURLWithPath: path)
    }

    static func index(_ path: String) throws -> URL {
        try folder(path, "index folder", hint: "build one with: c3po-index build ... --out \(path)")
    }

    static func model(_ path: String) throws -> URL {
        try folder(path, "model folder", hint: "a Hugging Face checkpoint folder: config.json, tokenizer.json, *.safetensors")
    }

    /// `path` must be an existing file (`-` is not accepted here).
    static func index(_ path: PathArgument) throws -> URL { try index(path.typed) }
    static func model(_ path: PathArgument) throws -> URL { try model(path.typed) }
    static func file(_ path: PathArgument, _ what: String) throws -> URL { try file(path.typed, what) }

    static func file(_ path: String, _ what: String) throws -> URL {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw UsageError("\(path): no such \(what)")
        }
        guard !isDirectory.boolValue else { throw UsageError("\(path): a folder, expected the \(what)") }
        return URL(fileURLWithPath: path)
    }
}

/// Warnings of one command: each goes to stderr as `warning: ...` when it is found and is
/// kept for the `--json` output's `warnings` list.
final class WarningLog {
    private(set) var all: [String] = []
    func add(_ text: String) {
        all.append(text)
        StandardError.warning(text)
    }
}

/// What both tools' `main` do beyond `ParsableCommand.main()`.
/// `--version`: the tool, then what its products run on (our kernels' path, the BLAS core).
public enum ToolVersion {
    public static func text(_ tool: String) -> String {
        "\(tool) (C3PO toolkit)\n\(BLASCore.summary)"
    }

    /// First thing in each tool's `main`: may run the process again with a better OpenBLAS core
    /// (BLASCore.correctAtStart).
    public static func prepareProcess() { BLASCore.correctAtStart() }
}

public enum ToolEntry {
    /// Parses and runs `Root` like `ParsableCommand.main`, except that a mistyped option
    /// is named as such. ArgumentParser reports a missing required option before an
    /// unknown one, so `--indx DIR` would read "Missing expected argument '--index'".
    public static func main<Root: ParsableCommand>(_ root: Root.Type, arguments: [String]? = nil) -> Never {
        let args = arguments ?? Array(CommandLine.arguments.dropFirst())
        do {
            var command = try Root.parseAsRoot(args)
            try command.run()
            Root.exit()
        } catch {
            let message = Root.fullMessage(for: error)
            if Root.message(for: error).hasPrefix("Missing expected argument"), let hint = typoHint(root, args) {
                // Keep ArgumentParser's usage lines, replace its first lines with the real mistake.
                let usage = message.components(separatedBy: "\n").drop { !$0.hasPrefix("Usage:") }.joined(separator: "\n")
                StandardError.write("Error: \(hint)\n" + (usage.isEmpty ? "" : usage + "\n"))
                Root.exit(withError: ExitCode(Root.exitCode(for: error).rawValue))
            }
            Root.exit(withError: error)
        }
    }

    /// "Unknown option '--indx'. Did you mean '--index'?" for the first `--name` in `args`
    /// that the addressed command does not define.
    static func typoHint<Root: ParsableCommand>(_ root: Root.Type, _ args: [String]) -> String? {
        let known = Set(optionNames(root, args))
        guard !known.isEmpty else { return nil }
        for a in args {
            if a == "--" { break }
            guard a.hasPrefix("--") else { continue }
            let name = String(a.split(separator: "=", maxSplits: 1)[0])
            guard !known.contains(name) else { continue }
            var best: (name: String, distance: Int)?
            for candidate in known.sorted() {
                let d = editDistance(name, candidate)
                if d <= 2, d < (best?.distance ?? Int.max) { best = (candidate, d) }
            }
            guard let best else { return "Unknown option '\(name)'." }
            return "Unknown option '\(name)'. Did you mean '\(best.name)'?"
        }
        return nil
    }

    /// The long option names of the subcommand `args` address (by name, else the default
    /// subcommand, else the root), read from its help text.
    static func optionNames<Root: ParsableCommand>(_ root: Root.Type, _ args: [String]) -> [String] {
        var command: ParsableCommand.Type = root
        var stack: [ParsableCommand.Type] = []
        var rest = args[...]
        while true {
            let subs = command.configuration.subcommands
            if let first = rest.first, let sub = subs.first(where: { $0.configuration.commandName == first }) {
                stack.append(sub); command = sub; rest = rest.dropFirst(); continue
            }
            if let d = command.configuration.defaultSubcommand { stack.append(d); command = d; continue }
            break
        }
        let help = stack.isEmpty ? root.helpMessage(columns: 10_000) : root.helpMessage(for: command, columns: 10_000)
        var names: [String] = []
        var scanner = help[...]
        while let r = scanner.range(of: "--") {
            let tail = scanner[r.upperBound...]
            let name = tail.prefix { $0.isLetter || $0.isNumber || $0 == "-" }
            if !name.isEmpty, name.first?.isLetter == true { names.append("--" + name) }
            scanner = tail[name.endIndex...]
        }
        return names
    }

    /// Levenshtein distance (insertions, deletions, substitutions).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        var row = Array(0...y.count)  // distances from x[..<i] to each prefix of y
        for i in x.indices {
            var diagonal = row[0]
            row[0] = i + 1
            for j in y.indices {
                let above = row[j + 1]
                row[j + 1] = min(above + 1, row[j] + 1, diagonal + (x[i] == y[j] ? 0 : 1))
                diagonal = above
            }
        }
        return row[y.count]
    }
}
