import Foundation
import XCTest

/// Runs the built executables as a user would.
enum Binaries {
    /// The directory holding the built products (next to the .xctest bundle).
    static var directory: URL {
        var url = URL(fileURLWithPath: CommandLine.arguments.first { $0.contains(".xctest") } ?? CommandLine.arguments[0])
        while url.pathComponents.count > 1 && !url.lastPathComponent.hasSuffix(".xctest") { url.deleteLastPathComponent() }
        return url.deletingLastPathComponent()
    }

    struct Result { var status: Int32; var stdout: String; var stderr: String }

    static func run(_ tool: String, _ arguments: [String], environment: [String: String] = [:]) throws -> Result {
        try Subprocess.run(directory.appendingPathComponent(tool), arguments, environment: environment)
    }
}

final class HelpTests: XCTestCase {
    func testBothToolsPrintHelpAndExitZero() throws {
        for tool in ["c3po-index", "c3po-apply"] {
            let r = try Binaries.run(tool, ["--help"])
            XCTAssertEqual(r.status, 0, "\(tool): \(r.stderr)")
            XCTAssertTrue(r.stdout.contains("USAGE: \(tool)"), r.stdout)
        }
    }

    func testUnknownOptionExitsNonZeroWithMessageOnStderr() throws {
        let r = try Binaries.run("c3po-index", ["--no-such-flag"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("no-such-flag"), r.stderr)
    }
}
