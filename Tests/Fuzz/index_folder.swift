// libFuzzer target: the files of an index folder that are parsed before faiss or the NPY reader
// see the folder, from untrusted bytes. The first byte chooses: 0, the rest is manifest.json
// (decoded, checked, then its `files` verified against an empty folder); 1, records.jsonl (the
// count taken as its number of lines, so that a well-formed file is parsed to its end); 2,
// task_weights.json. Built by Scripts/fuzz.
import Foundation

private let folder: URL = {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-fuzz-index-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = Data(bytes: data + 1, count: size - 1)
    let names = [IndexFolder.manifestFile, IndexFolder.recordsFile, IndexFolder.taskWeightsFile]
    let choice = Int(data[0]) % names.count
    let url = folder.appendingPathComponent(names[choice])
    guard (try? body.write(to: url)) != nil else { return 0 }
    defer { try? FileManager.default.removeItem(at: url) }
    switch choice {
    case 0:
        if let manifest = try? IndexFolder.readManifest(url) {
            _ = try? IndexFolder.verifyFiles(manifest, in: folder.appendingPathComponent("empty"))
        }
    case 1:
        let lines = body.reduce(0) { $0 + ($1 == 0x0a ? 1 : 0) }
        _ = try? IndexFolder.readRecords(url, count: lines, tasks: [:])
    default:
        _ = try? TaskWeights.load(url)
    }
    return 0
}
