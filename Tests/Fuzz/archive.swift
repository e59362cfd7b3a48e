// libFuzzer target: a reference archive (zip, tar, tar.gz) through libarchive and the official
// record reader, from untrusted bytes: every entry's path and sizes checked, every JSON file
// parsed and its records validated, as `c3po-index build --reference` reads them (with
// --skip-invalid on for odd first bytes, so that both ways through a bad record run). Limits
// are small (1 MiB an entry, 4 MiB in all) so that a bomb is refused fast. Built by Scripts/fuzz.
import Foundation

private let url = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-fuzz-archive-\(getpid()).zip")

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    guard (try? Data(bytes: data + 1, count: size - 1).write(to: url)) != nil else { return 0 }
    var options = ReferenceArchive.Options(skipInvalid: data[0] % 2 == 1,
                                           limits: .init(maxEntryBytes: 1 << 20, maxTotalBytes: 4 << 20))
    options.sumTolerance = 1e-3
    var set = ReferenceSet()
    _ = try? ReferenceArchive.read(url, options: options, into: &set, note: { _ in })
    return 0
}
