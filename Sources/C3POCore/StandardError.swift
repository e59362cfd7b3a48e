import Foundation

/// Diagnostics and progress go to stderr, never stdout (stdout carries results and --json).
public enum StandardError {
    /// Writes `text` to stderr. A progress line being redrawn on a terminal is cleared
    /// first, so a warning never lands in the middle of it (the next update redraws it).
    public static func write(_ text: String) {
        ProgressReporter.terminalLine.clear()
        raw(text)
    }

    public static func warning(_ text: String) { write("warning: \(text)\n") }

    /// The bytes as given, no line bookkeeping.
    static func raw(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// Whether stderr is a terminal (progress is then one line redrawn in place).
    public static var isTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

/// Progress of long work on stderr: count, rate and time left
/// ("recording pathways 120/360 (33%), 41.2/s, 6 s left").
///
/// Work that ends within `delay` seconds (10 by default; `C3PO_PROGRESS_AFTER` sets it)
/// shows nothing. Longer work shows progress from the moment it is known to be long:
/// after `delay` seconds, or after 1 second when the rate so far says the whole will take
/// longer than `delay`. On a terminal it is one line redrawn in place; otherwise plain
/// lines, one every `lineInterval` seconds, and a last one at the end. A disabled
/// reporter (`--quiet`) writes nothing.
public final class ProgressReporter: @unchecked Sendable {
    public static let defaultDelay: Double = 10
    /// Seconds between plain lines (stderr not a terminal).
    public static let lineInterval: Double = 5
    /// Seconds between redraws of the terminal line.
    static let redrawInterval: Double = 0.25

    /// The delay in force: `C3PO_PROGRESS_AFTER` (seconds, for scripts and tests), else 10.
    public static var configuredDelay: Double {
        if let s = ProcessInfo.processInfo.environment["C3PO_PROGRESS_AFTER"], let d = Double(s), d >= 0 { return d }
        return defaultDelay
    }

    private let label: String
    private let total: Int
    private let enabled: Bool
    private let terminal: Bool
    private let delay: Double
    private let clock: () -> Double
    private let output: (String) -> Void
    private let start: Double
    private var lastShown = -Double.infinity
    private var shown = false
    private var finished = false
    private let lock = NSLock()

    public convenience init(_ label: String, total: Int, enabled: Bool = true) {
        self.init(label, total: total, enabled: enabled, terminal: StandardError.isTerminal, delay: Self.configuredDelay,
                  clock: { ProcessInfo.processInfo.systemUptime }, output: StandardError.raw)
    }

    /// `clock` gives seconds (monotonic); `output` receives the exact bytes to write.
    public init(_ label: String, total: Int, enabled: Bool, terminal: Bool, delay: Double,
                clock: @escaping () -> Double, output: @escaping (String) -> Void) {
        self.label = label
        self.total = total
        self.enabled = enabled
        self.terminal = terminal
        self.delay = delay
        self.clock = clock
        self.output = output
        self.start = clock()
    }

    deinit {
        // Work that stopped early (an error) must not leave a half line before the error message.
        if shown && terminal && !finished { endTerminalLine() }
    }

    public func update(_ done: Int) {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        guard !finished else { return }
        let now = clock()
        let elapsed = now - start
        let complete = done >= total
        if !shown {
            let projected = done > 0 ? elapsed * Double(max(total, done)) / Double(done) : 0
            let long = elapsed >= delay || (elapsed >= min(1, delay) && projected > delay)
            guard long, !complete || elapsed >= delay else { return }
        } else if !complete {
            guard now - lastShown >= (terminal ? Self.redrawInterval : Self.lineInterval) else { return }
        }
        shown = true
        lastShown = now
        let text = line(done: done, elapsed: elapsed, complete: complete)
        if terminal {
            output("\r\u{1B}[K" + text)
            if complete { endTerminalLine() } else { Self.terminalLine.set { [weak self] in self?.clearLine() } }
        } else {
            output(text + "\n")
        }
        if complete { finished = true }
    }

    /// "label 120/360 (33%), 41.2/s, 6 s left"; at the end "label 360/360 (100%), 40.0/s, 9 s".
    func line(done: Int, elapsed: Double, complete: Bool) -> String {
        let pct = total > 0 ? min(100, 100 * done / total) : 100
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let rateText = rate >= 10 ? String(format: "%.0f/s", rate) : rate >= 1 ? String(format: "%.1f/s", rate)
            : rate > 0 ? String(format: "%.1f s each", 1 / rate) : "-"
        var s = "\(label) \(done)/\(total) (\(pct)%), \(rateText), "
        if complete {
            s += Self.duration(elapsed)
        } else {
            s += rate > 0 ? Self.duration(Double(max(total - done, 0)) / rate) + " left" : "time left unknown"
        }
        return s
    }

    /// "42 s", "3:07", "1:02:09".
    public static func duration(_ seconds: Double) -> String {
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s) s" }
        if s < 3600 { return String(format: "%d:%02d", s / 60, s % 60) }
        return String(format: "%d:%02d:%02d", s / 3600, (s / 60) % 60, s % 60)
    }

    private func clearLine() { output("\r\u{1B}[K") }

    private func endTerminalLine() {
        output("\n")
        Self.terminalLine.set(nil)
    }

    /// The terminal line currently drawn (one at a time), so other stderr output can clear it.
    static let terminalLine = LiveLine()

    final class LiveLine: @unchecked Sendable {
        private var clearer: (() -> Void)?
        private let lock = NSLock()
        func set(_ c: (() -> Void)?) { lock.lock(); clearer = c; lock.unlock() }
        func clear() {
            lock.lock(); let c = clearer; lock.unlock()
            c?()
        }
    }
}
