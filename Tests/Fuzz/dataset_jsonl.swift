// libFuzzer target: the dataset JSONL reader (JSON Lines, MCQuestion's checks). Built by Scripts/fuzz.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("c3po-fuzz-\(getpid()).jsonl")
    guard (try? Data(bytes: data, count: size).write(to: url)) != nil else { return 0 }
    _ = try? MCDataset.load(url)
    return 0
}
