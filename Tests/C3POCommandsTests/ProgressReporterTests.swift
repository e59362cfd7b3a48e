import C3POCore
import Foundation
import XCTest

/// `ProgressReporter` on a fake clock: silent for short work; count, rate and time left for
/// long work; one redrawn line on a terminal, plain lines otherwise; nothing when disabled.
final class ProgressReporterTests: XCTestCase {
    final class Recorder: @unchecked Sendable {
        var now = 0.0
        var text = ""
    }

    /// Runs `total` items of `secondsEach` through a reporter and returns what it wrote.
    func run(total: Int, secondsEach: Double, terminal: Bool, enabled: Bool = true, delay: Double = 10) -> String {
        let r = Recorder()
        let p = ProgressReporter("recording", total: total, enabled: enabled, terminal: terminal, delay: delay,
                                 clock: { r.now }, output: { r.text += $0 })
        for i in 1...total {
            r.now += secondsEach
            p.update(i)
        }
        return r.text
    }

    func testWorkShorterThanTheDelayShowsNothing() {
        XCTAssertEqual(run(total: 100, secondsEach: 0.05, terminal: false), "", "5 s of work must stay silent")
        XCTAssertEqual(run(total: 100, secondsEach: 0.05, terminal: true), "")
    }

    func testLongWorkGivesPlainLinesWithCountRateAndTimeLeft() {
        let text = run(total: 100, secondsEach: 0.5, terminal: false)  // 50 s at 2 per second
        XCTAssertFalse(text.contains("\r"), "no carriage returns when stderr is not a terminal")
        let lines = text.split(separator: "\n").map(String.init)
        XCTAssertTrue(text.hasSuffix("\n"))
        // shown from the first second on (the rate says the whole takes 50 s), then every 5 s, then the end
        XCTAssertEqual(lines.count, 11, text)
        XCTAssertEqual(lines.first, "recording 2/100 (2%), 2.0/s, 49 s left")
        XCTAssertEqual(lines[1], "recording 12/100 (12%), 2.0/s, 44 s left", "the next line 5 s later")
        XCTAssertEqual(lines.last, "recording 100/100 (100%), 2.0/s, 50 s")
    }

    func testSlowItemsShowSecondsEachAndMinutes() {
        let text = run(total: 30, secondsEach: 12, terminal: false)  // 6 minutes
        XCTAssertTrue(text.hasPrefix("recording 1/30 (3%), 12.0 s each, 5:48 left\n"), text)
        XCTAssertTrue(text.hasSuffix("recording 30/30 (100%), 12.0 s each, 6:00\n"), text)
    }

    func testTerminalGetsOneLineRedrawnInPlace() {
        let text = run(total: 100, secondsEach: 0.5, terminal: true)
        let draws = text.components(separatedBy: "\r\u{1B}[K").filter { !$0.isEmpty }
        XCTAssertGreaterThan(draws.count, 20, "redrawn about four times a second")
        XCTAssertEqual(text.filter { $0 == "\n" }.count, 1, "one line break, at the end")
        XCTAssertTrue(text.hasSuffix("recording 100/100 (100%), 2.0/s, 50 s\n"), text)
    }

    func testDisabledReporterWritesNothing() {
        XCTAssertEqual(run(total: 100, secondsEach: 1, terminal: false, enabled: false), "")
        XCTAssertEqual(run(total: 100, secondsEach: 1, terminal: true, enabled: false), "")
    }

    func testAZeroDelayShowsEvenShortWork() {
        XCTAssertTrue(run(total: 10, secondsEach: 0.01, terminal: false, delay: 0).hasSuffix("recording 10/10 (100%), 100/s, 0 s\n"))
    }

    func testDurations() {
        XCTAssertEqual(ProgressReporter.duration(42.4), "42 s")
        XCTAssertEqual(ProgressReporter.duration(187), "3:07")
        XCTAssertEqual(ProgressReporter.duration(3729), "1:02:09")
    }
}
