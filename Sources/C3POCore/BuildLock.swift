import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// One writer per output folder: an exclusive `flock` on `.NAME.lock` beside it, held for the
/// life of the process (the kernel releases it when the process ends, however it ends). A second
/// build of the same `--out` is refused, naming the holder, instead of racing the first.
public final class BuildLock {
    private let fd: Int32
    public let url: URL

    /// Takes the lock of `destination`, or throws naming the process that holds it.
    public init(for destination: URL) throws {
        let parent = destination.deletingLastPathComponent()
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        url = parent.appendingPathComponent(".\(destination.lastPathComponent).lock")
        fd = open(url.path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError.cannotWrite(url, String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 32)
            let n = pread(fd, &buffer, 31, 0)
            let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : "?"
            close(fd)
            throw FileError.cannotWrite(destination, "another build is writing it (pid \(holder), lock \(url.path)); wait for it to finish, or give another --out")
        }
        _ = ftruncate(fd, 0)
        let pid = Array("\(getpid())\n".utf8)
        _ = pwrite(fd, pid, pid.count, 0)
    }

    deinit { close(fd) } // releases the lock

    /// Removes what killed writers of `destination` left beside it (`.NAME.tmp-*`, `.NAME.old-*`
    /// from AtomicWrite); safe while this lock is held, since no other writer of it runs.
    public func removeLeftovers(of destination: URL) {
        let fm = FileManager.default
        let parent = destination.deletingLastPathComponent()
        let name = destination.lastPathComponent
        for entry in (try? fm.contentsOfDirectory(atPath: parent.path)) ?? []
        where entry.hasPrefix(".\(name).tmp-") || entry.hasPrefix(".\(name).old-") {
            try? fm.removeItem(at: parent.appendingPathComponent(entry))
        }
    }
}
