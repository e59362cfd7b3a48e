import Foundation

/// Diagnostics and progress go to stderr, never stdout (stdout carries results and --json).
public enum StandardError {
    public static func write(_ text: String) {
        FileHandle.standardError.write(Data(text.utf8))
    }

    public static func warning(_ text: String) { write("warning: \(text)\n") }
}

/// Throttled progress lines on stderr for long work ("embedding 1200/5000 (24%) 310/s").
public final class ProgressReporter: @unchecked Sendable {
    private let label: String
    private let total: Int
    private let start = Date()
    private var last = Date.distantPast
    private let enabled: Bool
    private let lock = NSLock()

    public init(_ label: String, total: Int, enabled: Bool = true) {
        self.label = label
        self.total = total
        self.enabled = enabled
    }

    public func update(_ done: Int) {
        guard enabled else { return }
        lock.lock(); defer { lock.unlock() }
        let now = Date()
        guard done >= total || now.timeIntervalSince(last) >= 1.0 else { return }
        last = now
        let elapsed = max(now.timeIntervalSince(start), 1e-9)
        let pct = total > 0 ? 100 * done / total : 100
        StandardError.write(String(format: "%@ %d/%d (%d%%) %.1f/s\n", label, done, total, pct, Double(done) / elapsed))
    }
}
