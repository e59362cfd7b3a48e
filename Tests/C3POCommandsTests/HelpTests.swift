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
        let p = Process()
        p.executableURL = directory.appendingPathComponent(tool)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Drain both pipes before waiting so a large output cannot block the child.
        final class Box: @unchecked Sendable { var data = Data() }
        let errBox = Box()
        let group = DispatchGroup()
        group.enter()
        DispatchQueue.global().async { errBox.data = err.fileHandleForReading.readDataToEndOfFile(); group.leave() }
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        group.wait()
        let errData = errBox.data
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
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
