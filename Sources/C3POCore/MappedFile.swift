import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A read-only memory mapping of a whole file. Pages are read from disk on first
/// touch and shared with the page cache, so a multi-gigabyte checkpoint costs
/// address space, not resident memory, until it is used.
public final class MappedFile: @unchecked Sendable {
    public let url: URL
    public let count: Int
    public let base: UnsafeRawPointer

    public init(url: URL) throws {
        self.url = url
        let fd = open(url.path, O_RDONLY)
        guard fd >= 0 else { throw FileError.cannotOpen(url, String(cString: strerror(errno))) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw FileError.cannotOpen(url, String(cString: strerror(errno))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw FileError.cannotOpen(url, "not a regular file") }
        count = Int(st.st_size)
        if count == 0 {
            // mmap of length 0 fails; an empty file maps to a valid dummy pointer.
            base = UnsafeRawPointer(UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 16))
            return
        }
        let p = mmap(nil, count, PROT_READ, MAP_PRIVATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw FileError.cannotOpen(url, "mmap failed: \(String(cString: strerror(errno)))") }
        base = UnsafeRawPointer(p)
    }

    deinit {
        if count == 0 {
            UnsafeMutableRawPointer(mutating: base).deallocate()
        } else {
            munmap(UnsafeMutableRawPointer(mutating: base), count)
        }
    }

    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }
}

extension FileError {
    /// The bytes of `url`, refused by name before they are read when the file holds more than
    /// `limit` bytes (`what` names the kind of file in the message).
    public static func read(_ url: URL, limit: Int, what: String) throws -> Data {
        // Mapped, not read: the size is checked before a byte is touched (and Foundation's
        // Data(contentsOf:) leaks 4 KiB on an empty file).
        let file = try MappedFile(url: url)
        guard file.count <= limit else {
            throw FileError.cannotOpen(url, "\(file.count) bytes exceed the limit of \(limit) bytes for \(what)")
        }
        return Data(bytes: file.base, count: file.count)
    }
}

public enum FileError: Error, CustomStringConvertible {
    case cannotOpen(URL, String)
    case cannotWrite(URL, String)
    case missing(URL, String)

    public var description: String {
        switch self {
        case let .cannotOpen(url, why): return "\(url.path): cannot open: \(why)"
        case let .cannotWrite(url, why): return "\(url.path): cannot write: \(why)"
        case let .missing(url, what): return "\(url.path): missing \(what)"
        }
    }
}
