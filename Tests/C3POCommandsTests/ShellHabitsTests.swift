import C3POCore
import Foundation
import XCTest

/// Man pages current with the tools' definitions, completion scripts for bash, zsh and fish,
/// and Scripts/check-readme catching the kinds of README drift it is there for.
final class ShellHabitsTests: XCTestCase {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// docs/man/TOOL.1 records the SHA-256 of the `--experimental-dump-help` it was made from
    /// (Scripts/make-man); the tools built here must print the same dump.
    func testManPagesAreCurrent() throws {
        for tool in ["c3po-index", "c3po-apply"] {
            let pageURL = Self.root.appendingPathComponent("docs/man/\(tool).1")
            let page = try String(contentsOf: pageURL, encoding: .utf8)
            let recorded = try XCTUnwrap(page.range(of: #"sha256 [0-9a-f]{64}"#, options: .regularExpression).map { String(page[$0].dropFirst(7)) },
                                         "docs/man/\(tool).1 records no sha256: run Scripts/make-man")
            let dump = try Binaries.run(tool, ["--experimental-dump-help"])
            XCTAssertEqual(dump.status, 0, dump.stderr)
            var hasher = SHA256Hasher()
            hasher.update(Data(dump.stdout.utf8))
            XCTAssertEqual(hasher.finalize(), recorded, "docs/man/\(tool).1 is stale (the options or help texts changed): run Scripts/make-man")
            XCTAssertFalse(page.contains("\n\n"), "docs/man/\(tool).1 has an empty line (mdoc warns): a help text with a blank line?")
            XCTAssertTrue(page.contains(".Nm \(tool)"), "docs/man/\(tool).1")
        }
        let apply = try String(contentsOf: Self.root.appendingPathComponent("docs/man/c3po-apply.1"), encoding: .utf8)
        XCTAssertTrue(apply.contains("Fl -text-file") && apply.contains("Fl -similarity-floor"), "c3po-apply.1 lacks options of inspect/run")
    }

    func testCompletionScriptsForBashZshAndFish() throws {
        let expectations = ["c3po-index": ["build", "query", "benchmark"], "c3po-apply": ["inspect", "text-file", "similarity-floor"]]
        for (tool, words) in expectations {
            for shell in ["bash", "zsh", "fish"] {
                let r = try Binaries.run(tool, ["--generate-completion-script", shell])
                XCTAssertEqual(r.status, 0, "\(tool) \(shell): \(r.stderr)")
                for w in words + [tool] { XCTAssertTrue(r.stdout.contains(w), "\(tool)'s \(shell) completion lacks '\(w)'") }
            }
        }
        let readme = try String(contentsOf: Self.root.appendingPathComponent("README.md"), encoding: .utf8)
        for shell in ["bash", "zsh", "fish"] {
            XCTAssertTrue(readme.contains("--generate-completion-script \(shell)"), "README.md does not show the \(shell) completion")
        }
    }

    // MARK: Scripts/check-readme

    func checkReadme(_ markdown: String) throws -> Binaries.Result {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("readme-\(UUID().uuidString).md")
        try Data(markdown.utf8).write(to: file)
        defer { try? FileManager.default.removeItem(at: file) }
        return try Subprocess.run(Self.root.appendingPathComponent("Scripts/check-readme"),
                                  ["--readme", file.path, "--bin", Binaries.directory.path])
    }

    static let fence = "```"
    static let model = "Tests/Fixtures/moe/olmoe-f32"

    func testCheckReadmeRunsCommandsAndSkipsMarkedOnesByName() throws {
        let r = try checkReadme("""
            <!-- check-readme: skip (needs your own checkpoint) -->
            \(Self.fence)
            c3po-apply inspect --model DIR --text-file prompt.txt
            \(Self.fence)

            \(Self.fence)
            export PATH="$PWD/.build/release:$PATH"
            printf 'Question: hi\\nAnswer:' > prompt.txt
            c3po-apply inspect --model \(Self.model) \\
                --text-file prompt.txt
            \(Self.fence)
            """)
        XCTAssertEqual(r.status, 0, r.stdout + r.stderr)
        XCTAssertTrue(r.stdout.contains(".md:3 (needs your own checkpoint): c3po-apply inspect --model DIR"), r.stdout)
        XCTAssertTrue(r.stdout.contains("3 commands run, 0 failed, 1 skipped by name"), r.stdout)
    }

    func testCheckReadmeFailsOnAnErrorAndOnASilentlyWrongPrompt() throws {
        let failing = try checkReadme("\(Self.fence)\nexport PATH=\"$PWD/.build/release:$PATH\"\nc3po-index info --index Index/nope\n\(Self.fence)\n")
        XCTAssertEqual(failing.status, 1)
        XCTAssertTrue(failing.stdout.contains(".md:3 (exit 1"), failing.stdout)
        // the README's old inspect example: "\n" in double quotes is a backslash and an n
        let wrong = try checkReadme("""
            \(Self.fence)
            export PATH="$PWD/.build/release:$PATH"
            c3po-apply inspect --model \(Self.model) --text "Question: hi\\nAnswer:"
            \(Self.fence)
            """)
        XCTAssertEqual(wrong.status, 1)
        XCTAssertTrue(wrong.stdout.contains("warned, and its block does not expect warnings"), wrong.stdout)
        // a block announced as warning must warn
        let quiet = try checkReadme("""
            <!-- check-readme: expect warnings -->
            \(Self.fence)
            \(Binaries.directory.path)/c3po-index --help
            \(Self.fence)
            """)
        XCTAssertEqual(quiet.status, 1)
        XCTAssertTrue(quiet.stdout.contains("expected a warning, none came"), quiet.stdout)
        // a README with nothing to run is an error, not a pass
        let empty = try checkReadme("no code here\n")
        XCTAssertEqual(empty.status, 1)
    }

    func testReadmeHasNoUnmarkedCommandOutsideTheTestbed() throws {
        // every command Scripts/check-readme would run names only shipped files (no DIR, no ~/models)
        let r = try Subprocess.run(Self.root.appendingPathComponent("Scripts/check-readme"), ["--list"])
        XCTAssertEqual(r.status, 0, r.stderr)
        let run = r.stdout.split(separator: "\n").filter { $0.hasPrefix("run ") }
        XCTAssertGreaterThan(run.count, 8, r.stdout)
        for line in run {
            XCTAssertFalse(line.contains(" DIR") || line.contains("~/models") || line.contains("reference.zip"), "unmarked command needs a user's files: \(line)")
        }
        XCTAssertTrue(run.contains { $0.contains("c3po-apply inspect") && $0.contains("--text-file") }, r.stdout)
        XCTAssertTrue(run.contains { $0.contains("arc_easy") && $0.contains("expects warnings") }, r.stdout)
    }
}
