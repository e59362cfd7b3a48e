import CArchive
import Foundation

/// Streams the regular-file entries of a `.zip`, `.tar` or `.tar.gz` with libarchive,
/// refusing hostile archives: entry paths that are absolute or contain `..`, an entry
/// or a total uncompressed size over the limits, and truncated or corrupt data.
public struct ArchiveReader {
    public struct Limits: Sendable {
        public var maxEntryBytes: Int64
        public var maxTotalBytes: Int64
        /// An entry is held whole in memory while it is parsed: its cap (512 MiB by default, far
        /// below the machine's memory; a published reference file of 8,000 records is about 230 MB)
        /// bounds the build's memory whatever the archive declares.
        public static let defaultMaxEntryBytes: Int64 = 512 << 20
        public static let defaultMaxTotalBytes: Int64 = 4 << 30
        public init(maxEntryBytes: Int64 = Limits.defaultMaxEntryBytes, maxTotalBytes: Int64 = Limits.defaultMaxTotalBytes) {
            self.maxEntryBytes = maxEntryBytes; self.maxTotalBytes = maxTotalBytes
        }
    }

    public enum Error: Swift.Error, CustomStringConvertible, Equatable {
        case cannotOpen(String, String)
        case unsafePath(String, String)
        case entryTooLarge(String, String, Int64)
        case totalTooLarge(String, Int64)
        case corrupt(String, String)

        public var description: String {
            switch self {
            case let .cannotOpen(a, why): return "\(a): cannot open archive: \(why)"
            case let .unsafePath(a, p): return "\(a): refused entry '\(p)': absolute path or '..' component"
            case let .entryTooLarge(a, p, limit): return "\(a): entry '\(p)' exceeds the entry size limit of \(limit) bytes (refused before it is read whole; --max-entry-bytes raises the limit)"
            case let .totalTooLarge(a, limit): return "\(a): uncompressed content exceeds the total size limit of \(limit) bytes (--max-archive-bytes raises it)"
            case let .corrupt(a, why): return "\(a): truncated or corrupt archive: \(why)"
            }
        }
    }

    /// libarchive's AE_IFREG (a cast macro that Swift does not import).
    static let regularFile: UInt32 = 0o100000

    public let url: URL
    public let limits: Limits

    public init(url: URL, limits: Limits = Limits()) {
        self.url = url
        self.limits = limits
    }

    /// Whether `path` stays inside the extraction root.
    public static func isSafe(path: String) -> Bool {
        if path.hasPrefix("/") || path.hasPrefix("\\") { return false }
        if path.count >= 2, path.dropFirst().first == ":" { return false } // C:\...
        let parts = path.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        return !parts.contains("..")
    }

    /// libarchive's message for its last error, which it does not always set (a gzip stream that
    /// ends inside its header fails to open with none: the fuzzer's find, a nil C string).
    static func message(_ a: OpaquePointer, or fallback: String) -> String {
        archive_error_string(a).map { String(cString: $0) } ?? fallback
    }

    /// Calls `body(path, contents)` for each regular file, in archive order. Sizes are
    /// enforced while reading, so a lying header cannot slip a huge entry through.
    public func forEachFile(_ body: (String, Data) throws -> Void) throws {
        let name = url.path
        guard let a = archive_read_new() else { throw Error.cannotOpen(name, "archive_read_new failed") }
        defer { archive_read_free(a) }
        archive_read_support_filter_all(a)
        archive_read_support_format_zip(a)
        archive_read_support_format_tar(a)
        archive_read_support_format_gnutar(a)
        guard FileManager.default.fileExists(atPath: name) else { throw Error.cannotOpen(name, "no such file") }
        guard archive_read_open_filename(a, name, 1 << 16) == ARCHIVE_OK else {
            throw Error.cannotOpen(name, Self.message(a, or: "not a readable archive"))
        }
        var total: Int64 = 0
        var entry: OpaquePointer?
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let r = archive_read_next_header(a, &entry)
            if r == ARCHIVE_EOF { break }
            guard r == ARCHIVE_OK || r == ARCHIVE_WARN, let entry else {
                throw Error.corrupt(name, Self.message(a, or: "bad header"))
            }
            let path = archive_entry_pathname(entry).map { String(cString: $0) } ?? ""
            guard Self.isSafe(path: path) else { throw Error.unsafePath(name, path) }
            guard archive_entry_filetype(entry) == Self.regularFile else { continue }
            if archive_entry_size_is_set(entry) != 0 {
                let declared = archive_entry_size(entry)
                if declared > limits.maxEntryBytes { throw Error.entryTooLarge(name, path, limits.maxEntryBytes) }
                if total + declared > limits.maxTotalBytes { throw Error.totalTooLarge(name, limits.maxTotalBytes) }
            }
            var data = Data()
            while true {
                let n = chunk.withUnsafeMutableBytes { archive_read_data(a, $0.baseAddress, $0.count) }
                if n == 0 { break }
                guard n > 0 else {
                    throw Error.corrupt(name, "entry '\(path)': " + Self.message(a, or: "read failed"))
                }
                total += Int64(n)
                if Int64(data.count + n) > limits.maxEntryBytes { throw Error.entryTooLarge(name, path, limits.maxEntryBytes) }
                if total > limits.maxTotalBytes { throw Error.totalTooLarge(name, limits.maxTotalBytes) }
                data.append(contentsOf: chunk[0..<n])
            }
            try body(path, data)
        }
    }
}
