// libFuzzer target: a checkpoint folder's safetensors header and data offsets, and its
// model.safetensors.index.json, from untrusted bytes. The first byte chooses: even, the rest is
// model.safetensors; odd, the rest is model.safetensors.index.json beside one valid shard `a.safetensors`
// (tensor "t", F32 [2]). Every tensor found is read whole. Built by Scripts/fuzz.
import Foundation

private let folder: URL = {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("c3po-fuzz-safetensors-\(getpid())")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    let header = Data(#"{"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#.utf8)
    var shard = Data()
    var len = UInt64(header.count).littleEndian
    withUnsafeBytes(of: &len) { shard.append(contentsOf: $0) }
    shard.append(header)
    shard.append(Data(count: 8))
    try? shard.write(to: dir.appendingPathComponent("a.safetensors"))
    return dir
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size > 0 else { return 0 }
    let body = Data(bytes: data + 1, count: size - 1)
    let single = folder.appendingPathComponent("model.safetensors"), index = folder.appendingPathComponent("model.safetensors.index.json")
    try? FileManager.default.removeItem(at: single)
    try? FileManager.default.removeItem(at: index)
    do {
        try body.write(to: data[0] % 2 == 0 ? single : index)
        let checkpoint = try SafetensorsCheckpoint(directory: folder)
        for (_, t) in checkpoint.tensors where t.isFloat && t.count <= 1 << 16 { _ = t.floats() }
    } catch {}
    return 0
}
