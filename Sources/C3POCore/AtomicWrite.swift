import Foundation

/// Writes that never leave a half-written result: the content goes to a temporary
/// sibling of the destination, which is renamed over it only once complete.
public enum AtomicWrite {
    /// A fresh, unused sibling path of `destination` (same directory, so rename is atomic).
    public static func temporarySibling(of destination: URL, tag: String = "tmp") -> URL {
        let name = ".\(destination.lastPathComponent).\(tag)-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        return destination.deletingLastPathComponent().appendingPathComponent(name)
    }

    /// Writes `data` to `url` atomically; an existing file is replaced only on success.
    public static func write(_ data: Data, to url: URL) throws {
        let tmp = temporarySibling(of: url)
        do {
            try data.write(to: tmp)
            if rename(tmp.path, url.path) != 0 {
                throw FileError.cannotWrite(url, String(cString: strerror(errno)))
            }
        } catch {
            try? FileManager.default.removeItem(at: tmp)
            if let e = error as? FileError { throw e }
            throw FileError.cannotWrite(url, "\(error)")
        }
    }

    /// Builds a directory at `destination` through `body`, which fills a temporary
    /// sibling directory. On success the sibling replaces `destination` (an older
    /// directory there is removed only after the new one is in place); on failure
    /// the sibling is deleted and `destination` is left as it was.
    public static func buildDirectory(at destination: URL, _ body: (URL) throws -> Void) throws {
        let fm = FileManager.default
        let parent = destination.deletingLastPathComponent()
        try fm.createDirectory(at: parent, withIntermediateDirectories: true)
        let tmp = temporarySibling(of: destination)
        try fm.createDirectory(at: tmp, withIntermediateDirectories: false)
        do {
            try body(tmp)
        } catch {
            try? fm.removeItem(at: tmp)
            // A file that could not be written (a full disk, a quota): named by the folder it was
            // for, with the system's reason, rather than as Foundation's error object.
            let ns = error as NSError
            let path = ns.userInfo[NSFilePathErrorKey] as? String ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
            if !(error is FileError), let path, let reason = systemReason(ns) {
                let kept = fm.fileExists(atPath: destination.path) ? "the previous folder is left as it was" : "nothing was written"
                throw FileError.cannotWrite(destination, "\(URL(fileURLWithPath: path).lastPathComponent): \(reason); \(kept)")
            }
            throw error
        }
        // An older directory is swapped out in one step where the kernel can (Linux renameat2
        // RENAME_EXCHANGE): a kill at any instant leaves either the old folder or the new one.
        if fm.fileExists(atPath: destination.path), exchange(tmp.path, destination.path) {
            try? fm.removeItem(at: tmp) // now the old directory
            return
        }
        var old: URL?
        if fm.fileExists(atPath: destination.path) {
            let aside = temporarySibling(of: destination, tag: "old")
            guard rename(destination.path, aside.path) == 0 else {
                try? fm.removeItem(at: tmp)
                throw FileError.cannotWrite(destination, String(cString: strerror(errno)))
            }
            old = aside
        }
        guard rename(tmp.path, destination.path) == 0 else {
            let why = String(cString: strerror(errno))
            if let old { _ = rename(old.path, destination.path) }
            try? fm.removeItem(at: tmp)
            throw FileError.cannotWrite(destination, why)
        }
        if let old { try? fm.removeItem(at: old) }
    }

    /// The POSIX reason behind a Foundation file error ("No space left on device"), if any.
    static func systemReason(_ error: NSError) -> String? {
        if error.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(error.code))) }
        if let under = error.userInfo[NSUnderlyingErrorKey] as? Error {
            let u = under as NSError
            if u.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(u.code))) }
        }
        // Foundation's own codes for a full disk, when it gives no underlying error.
        if error.domain == NSCocoaErrorDomain, error.code == CocoaError.fileWriteOutOfSpace.rawValue { return String(cString: strerror(ENOSPC)) }
        return nil
    }

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32
    /// glibc's renameat2, looked up at run time (Swift's Glibc module does not declare it).
    private static let renameat2: RenameAt2? = {
        guard let sym = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "renameat2") else { return nil } // RTLD_DEFAULT
        return unsafeBitCast(sym, to: RenameAt2.self)
    }()

    /// Swaps two existing paths atomically; false where the system cannot (the caller falls back).
    static func exchange(_ a: String, _ b: String) -> Bool {
        guard let f = renameat2 else { return false }
        return f(AT_FDCWD, a, AT_FDCWD, b, 2 /* RENAME_EXCHANGE */) == 0
    }
}
