import C3POCore
import CArchive
import Foundation

/// Writes small archives (`.zip`, `.tar`, `.tar.gz`) with libarchive: used to export
/// reference records in the official layout and by the tests to make fixtures.
public enum ArchiveWriter {
    public enum Format: Sendable { case zip, tar, tarGzip }

    public struct Error: Swift.Error, CustomStringConvertible {
        public let message: String
        public var description: String { "archive write failed: \(message)" }
    }

    /// Writes `entries` (path, contents) in order, atomically.
    public static func write(_ entries: [(path: String, data: Data)], to url: URL, format: Format) throws {
        let tmp = AtomicWrite.temporarySibling(of: url)
        defer { try? FileManager.default.removeItem(at: tmp) }
        guard let a = archive_write_new() else { throw Error(message: "archive_write_new failed") }
        defer { archive_write_free(a) }
        switch format {
        case .zip: archive_write_set_format_zip(a)
        case .tar: archive_write_set_format_pax_restricted(a)
        case .tarGzip:
            archive_write_set_format_pax_restricted(a)
            archive_write_add_filter_gzip(a)
        }
        guard archive_write_open_filename(a, tmp.path) == ARCHIVE_OK else {
            throw Error(message: ArchiveReader.message(a, or: "libarchive gave no message"))
        }
        for (path, data) in entries {
            guard let e = archive_entry_new() else { throw Error(message: "archive_entry_new failed") }
            defer { archive_entry_free(e) }
            archive_entry_set_pathname(e, path)
            archive_entry_set_size(e, Int64(data.count))
            archive_entry_set_filetype(e, ArchiveReader.regularFile)
            archive_entry_set_perm(e, 0o644)
            guard archive_write_header(a, e) == ARCHIVE_OK else { throw Error(message: ArchiveReader.message(a, or: "libarchive gave no message")) }
            let written = data.withUnsafeBytes { archive_write_data(a, $0.baseAddress, $0.count) }
            guard written == data.count else { throw Error(message: "short write of '\(path)'") }
        }
        guard archive_write_close(a) == ARCHIVE_OK else { throw Error(message: ArchiveReader.message(a, or: "libarchive gave no message")) }
        guard rename(tmp.path, url.path) == 0 else { throw Error(message: "rename to \(url.path) failed") }
    }
}
