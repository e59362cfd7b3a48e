import C3POCore
import Foundation
import XCTest

/// Runs a program with optional standard input, in an optional folder.
enum Subprocess {
    static func run(_ executable: URL, _ arguments: [String], stdin: Data? = nil, cwd: URL? = nil,
                    environment: [String: String] = [:]) throws -> Binaries.Result {
        let p = Process()
        p.executableURL = executable
        p.arguments = arguments
        if let cwd { p.currentDirectoryURL = cwd }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe(), input = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(stdin) }
        try input.fileHandleForWriting.close()
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        p.waitUntilExit()
        return .init(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                     stderr: String(decoding: errBox.data, as: UTF8.self))
    }

    static func tool(_ name: String, _ arguments: [String], stdin: Data? = nil) throws -> Binaries.Result {
        try run(Binaries.directory.appendingPathComponent(name), arguments, stdin: stdin)
    }
}

/// What a newcomer meets first (issue 19): help that shows the options, typos named as
/// typos, missing folders named as folders, prompts given exactly.
final class NewcomerTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let model = root.appendingPathComponent("Tests/Fixtures/moe/olmoe-f32")

    var dir: URL!
    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-newcomer-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir) }

    // MARK: help

    func testApplyHelpShowsTheDefaultCommandsOptions() throws {
        for flag in ["--help", "-h", "help"] {
            let r = try Binaries.run("c3po-apply", [flag])
            XCTAssertEqual(r.status, 0, r.stderr)
            for option in ["--index <dir>", "--model <dir>", "--test <file>", "--method <method>", "--similarity-floor", "--json"] {
                XCTAssertTrue(r.stdout.contains(option), "c3po-apply \(flag) does not show \(option):\n\(r.stdout)")
            }
            XCTAssertTrue(r.stdout.contains("inspect"), r.stdout)
        }
    }

    /// Every help screen: option lines in the option column, continuation lines in the help
    /// column (the --embedder "Default:" line used to start in column 9), no internal type
    /// names, path options with a placeholder saying what they take.
    func testHelpScreensKeepTheirColumnsAndSayWhatOptionsTake() throws {
        var screens: [(String, [String])] = []
        for tool in ["c3po-index", "c3po-apply"] {
            screens.append((tool, []))
            // every subcommand the root lists
            let root = try Binaries.run(tool, ["--help"]).stdout.components(separatedBy: "\n")
            for line in root.drop(while: { $0 != "SUBCOMMANDS:" }).dropFirst().prefix(while: { !$0.isEmpty })
            where line.hasPrefix("  ") && !line.hasPrefix("   ") {
                if let name = line.split(separator: " ").first { screens.append((tool, [String(name)])) }
            }
        }
        XCTAssertGreaterThanOrEqual(screens.count, 8, "\(screens)")
        let internalName = try NSRegularExpression(pattern: #"\bC3PO[A-Z][A-Za-z]+\.[A-Z]"#)
        let pathOption = try NSRegularExpression(
            pattern: #"--(index|model|test|out|reference|benchmark|embeddings|file|vectors|emit-weights|routing|text-file|input|output|embedder) <([a-z=-]+)>"#)
        for (tool, sub) in screens {
            let r = try Binaries.run(tool, sub + ["--help"], environment: ["COLUMNS": "80"])
            XCTAssertEqual(r.status, 0, r.stderr)
            let name = ([tool] + sub).joined(separator: " ")
            let range = NSRange(r.stdout.startIndex..., in: r.stdout)
            XCTAssertNil(internalName.firstMatch(in: r.stdout, range: range), "\(name) --help names an internal type:\n\(r.stdout)")
            for m in pathOption.matches(in: r.stdout, range: range) {
                let placeholder = String(r.stdout[Range(m.range(at: 2), in: r.stdout)!])
                XCTAssertTrue(["dir", "file", "archive"].contains(placeholder), "\(name): placeholder <\(placeholder)> of --\(String(r.stdout[Range(m.range(at: 1), in: r.stdout)!]))")
            }
            var inOptions = false
            for line in r.stdout.components(separatedBy: "\n") {
                if line.hasSuffix(":") && !line.hasPrefix(" ") { inOptions = line == "OPTIONS:" || line.hasPrefix("OPTIONS OF") || line == "ARGUMENTS:"; continue }
                guard inOptions, !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
                let indent = line.prefix { $0 == " " }.count
                let ok = (indent == 2 && (line.dropFirst(2).hasPrefix("-") || line.dropFirst(2).hasPrefix("<"))) || indent >= 26
                XCTAssertTrue(ok, "\(name) --help: line outside the option and help columns: '\(line)'")
            }
        }
    }

    func testBuildHelpDescribesBothSourcesAndHowToResume() throws {
        let r = try Binaries.run("c3po-index", ["build", "--help"], environment: ["COLUMNS": "200"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let overview = r.stdout.components(separatedBy: "\n\n").first ?? ""
        XCTAssertTrue(overview.contains("--model") && overview.contains("--benchmark") && overview.contains("--reference"), overview)
        let words = r.stdout.split(whereSeparator: \.isWhitespace).joined(separator: " ")
        XCTAssertTrue(words.contains(".NAME.work/ beside --out, and the same command run again continues"), r.stdout)
        XCTAssertFalse(r.stdout.contains("<reference>") || r.stdout.contains("<out>"), r.stdout)
    }

    // MARK: mistakes

    func testAMistypedOptionIsNamedWithTheNearestName() throws {
        let apply = try Binaries.run("c3po-apply", ["--indx", "Index/x", "--model", "m", "--test", "t"])
        XCTAssertEqual(apply.status, 64)
        XCTAssertTrue(apply.stderr.contains("Unknown option '--indx'. Did you mean '--index'?"), apply.stderr)
        XCTAssertFalse(apply.stderr.contains("Missing expected argument"), apply.stderr)
        XCTAssertTrue(apply.stderr.contains("Usage: c3po-apply run"), apply.stderr)
        let info = try Binaries.run("c3po-index", ["info", "--indx", "Index/x"])
        XCTAssertEqual(info.status, 64)
        XCTAssertTrue(info.stderr.contains("Unknown option '--indx'. Did you mean '--index'?"), info.stderr)
        // A missing option with no typo beside it is still reported as missing.
        let missing = try Binaries.run("c3po-index", ["info"])
        XCTAssertTrue(missing.stderr.contains("Missing expected argument '--index <dir>'"), missing.stderr)
    }

    func testMissingFoldersAndFilesAreNamedAsTheUserGaveThem() throws {
        let nope = dir.appendingPathComponent("nope").path
        let info = try Binaries.run("c3po-index", ["info", "--index", nope])
        XCTAssertEqual(info.status, 1)
        XCTAssertTrue(info.stderr.contains("\(nope): no such index folder"), info.stderr)
        XCTAssertFalse(info.stderr.contains("manifest.json"), info.stderr)

        let inspect = try Binaries.run("c3po-apply", ["inspect", "--model", nope, "--text", "hi"])
        XCTAssertTrue(inspect.stderr.contains("\(nope): no such model folder"), inspect.stderr)
        XCTAssertFalse(inspect.stderr.contains("config.json: "), inspect.stderr)

        let run = try Binaries.run("c3po-apply", ["--index", dir.path, "--model", Self.model.path, "--test", nope + ".jsonl"])
        XCTAssertTrue(run.stderr.contains("\(nope).jsonl: no such test file"), run.stderr)
    }

    func testMalformedJSONLineNamesLineColumnAndReason() throws {
        let bad = dir.appendingPathComponent("bad.jsonl")
        try Data("\n{\"id\": \"a\" \"task\": \"t\"}\n".utf8).write(to: bad)
        let r = try Binaries.run("c3po-apply", ["--index", dir.path, "--model", Self.model.path, "--test", bad.path])
        XCTAssertEqual(r.status, 1)
        XCTAssertTrue(r.stderr.contains("\(bad.path):2: not valid JSON: unexpected '\"', expected ',' or '}' at column 12"), r.stderr)
        // the same reason from the library, for a line that is JSON but not an object
        try Data("[1, 2]\n".utf8).write(to: bad)
        XCTAssertThrowsError(try MCDataset.load(bad)) { e in
            XCTAssertEqual("\(e)", "\(bad.path):1: not a JSON object")
        }
    }

    func testReferenceIsAnArchiveAndArchiveOptionsAreRefusedWithModel() throws {
        let bench = Self.root.appendingPathComponent("Datasets/testbed/reference.jsonl").path
        let r = try Binaries.run("c3po-index", ["build", "--reference", bench, "--out", dir.appendingPathComponent("i").path])
        XCTAssertEqual(r.status, 64)
        XCTAssertTrue(r.stderr.contains("--model DIR --benchmark \(bench)"), r.stderr)
        // Archive options have no meaning for a model run: refused by name, never ignored.
        for (flag, value) in [("--skip-invalid", nil), ("--max-archive-bytes", "1000"), ("--embeddings", "e.npy")] as [(String, String?)] {
            let m = try Binaries.run("c3po-index", ["build", "--model", Self.model.path, "--benchmark", bench, flag] + (value.map { [$0] } ?? [])
                                                    + ["--out", dir.appendingPathComponent("i").path])
            XCTAssertEqual(m.status, 64, flag)
            XCTAssertTrue(m.stderr.contains("not with --model: \(flag)"), m.stderr)
        }
    }

    // MARK: prompts given exactly

    func golden() throws -> (text: String, ids: [Int]) {
        let g = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: Self.model.appendingPathComponent("golden.json"))) as? [String: Any])
        let p = try XCTUnwrap((g["prompts"] as? [[String: Any]])?.first)
        return (try XCTUnwrap(p["text"] as? String), try XCTUnwrap(p["ids"] as? [Int]))
    }

    func inspectJSON(_ args: [String], stdin: Data? = nil) throws -> (ids: [Int], warnings: [String], stderr: String) {
        let r = try Subprocess.tool("c3po-apply", ["inspect", "--model", Self.model.path, "--json"] + args, stdin: stdin)
        XCTAssertEqual(r.status, 0, r.stderr)
        let o = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout)
        return (try XCTUnwrap(o["token_ids"] as? [Int]), try XCTUnwrap(o["warnings"] as? [String]), r.stderr)
    }

    func testPromptFromStandardInputOrAFileIsExact() throws {
        let g = try golden()
        XCTAssertTrue(g.text.contains("\n"), "the golden prompt has a line break")
        let piped = try inspectJSON(["--text-file", "-"], stdin: Data(g.text.utf8))
        XCTAssertEqual(piped.ids, g.ids)
        XCTAssertEqual(piped.warnings, [])
        // a file as an editor writes it: the final line break is not part of the prompt
        let file = dir.appendingPathComponent("prompt.txt")
        try Data((g.text + "\n").utf8).write(to: file)
        XCTAssertEqual(try inspectJSON(["--text-file", file.path]).ids, g.ids)
        XCTAssertEqual(try inspectJSON(["--text", g.text]).ids, g.ids)
    }

    func testALiteralBackslashNIsWarnedAbout() throws {
        let g = try golden()
        let typed = g.text.replacingOccurrences(of: "\n", with: "\\n")  // what "...\nAnswer:" in double quotes passes
        let r = try inspectJSON(["--text", typed])
        XCTAssertNotEqual(r.ids, g.ids, "another prompt")
        XCTAssertEqual(r.warnings.count, 1)
        XCTAssertTrue(r.warnings.first?.contains("literal \\n") == true, "\(r.warnings)")
        XCTAssertTrue(r.stderr.contains("warning: --text holds a literal \\n"), r.stderr)
        // with a real line break as well, the backslash is meant: no warning
        XCTAssertEqual(try inspectJSON(["--text", typed + "\n"]).warnings, [])
    }

    func testTextAndTextFileAreOneOrTheOther() throws {
        let both = try Binaries.run("c3po-apply", ["inspect", "--model", Self.model.path, "--text", "a", "--text-file", "-"])
        XCTAssertEqual(both.status, 64)
        XCTAssertTrue(both.stderr.contains("exactly one of --text"), both.stderr)
        let none = try Binaries.run("c3po-apply", ["inspect", "--model", Self.model.path])
        XCTAssertEqual(none.status, 64)
    }

    // MARK: Scripts/demo

    func testDemoHelpIsItsHeaderAndItsOptionsMeanWhatTheToolsMean() throws {
        let demo = Self.root.appendingPathComponent("Scripts/demo")
        let help = try Subprocess.run(demo, ["--help"])
        XCTAssertEqual(help.status, 0, help.stderr)
        XCTAssertFalse(help.stdout.contains("set -euo pipefail"), help.stdout)
        XCTAssertTrue(help.stdout.contains("--benchmark FILE.jsonl"), help.stdout)
        XCTAssertFalse(help.stdout.contains("--reference"), "the demo's references are benchmark files: --benchmark\n\(help.stdout)")
        let old = try Subprocess.run(demo, ["--model", "m", "--reference", "r.jsonl", "--test", "t.jsonl"])
        XCTAssertEqual(old.status, 2)
        XCTAssertTrue(old.stderr.contains("--benchmark FILE.jsonl"), old.stderr)
    }
}
