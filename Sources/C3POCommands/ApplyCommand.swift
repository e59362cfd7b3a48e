import ArgumentParser
import Foundation

/// `c3po-apply`: the runtime: re-mix a test set's routing toward its successful neighbours.
/// `run` is the default subcommand: `c3po-apply --index ...` and `c3po-apply run --index ...` are the same.
public struct ApplyCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "c3po-apply",
        abstract: "Run a test set with C3PO expert re-mixing and report base vs C3PO accuracy.",
        usage: """
            c3po-apply [run] --index <dir> --model <dir> --test <file> [<options>]
            c3po-apply inspect --model <dir> (--text <text> | --text-file <file>) [<options>]
            c3po-apply report --out <file.html> [--index <dir>] <run.jsonl> ... [<options>]
            """,
        discussion: "Without a subcommand, c3po-apply runs `run`: its options are listed below and in 'c3po-apply run --help'.",
        version: ToolVersion.text("c3po-apply"),
        subcommands: [RunCommand.self, InspectCommand.self, ReportCommand.self, MergeResultsCommand.self],
        defaultSubcommand: RunCommand.self
    )
    public init() {}

    /// `c3po-apply --help` (also `-h`, `help`): the root's help, then the options of the
    /// default subcommand, so that what `c3po-apply --index ...` accepts is visible where a
    /// newcomer looks first.
    public static func rootHelp(columns: Int? = nil) -> String {
        let runHelp = helpMessage(for: RunCommand.self, columns: columns).components(separatedBy: "\n")
        let options = runHelp.drop { $0 != "OPTIONS:" }.dropFirst()
            .filter { !$0.contains("-h, --help") }
        var text = helpMessage(columns: columns)
        while text.hasSuffix("\n") { text.removeLast() }
        return text + "\n\nOPTIONS OF run (the default subcommand):\n" + options.joined(separator: "\n")
    }

    public static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        if args.count == 1, ["--help", "-h", "help"].contains(args[0]) {
            var text = rootHelp()
            while text.hasSuffix("\n") { text.removeLast() }
            print(text)
            Self.exit()
        }
        ToolEntry.main(Self.self, arguments: args)
    }
}
