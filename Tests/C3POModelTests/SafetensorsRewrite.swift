import C3POCore
import Foundation

/// Test checkpoints rewritten in place: a safetensors file's tensors read as f32, edited, and
/// written back as F32 (shapes kept, keys sorted, the header padded to 8 bytes).
enum SafetensorsRewrite {
    static func rewrite(_ url: URL, edit: (inout [String: ([Int], [Float])]) -> Void = { _ in }) throws {
        var tensors: [String: ([Int], [Float])] = [:]
        do {
            let file = try SafetensorsFile(url: url)
            for (k, t) in file.tensors { tensors[k] = (t.shape, t.floats()) }
        }
        edit(&tensors)
        var header: [String: Any] = [:]
        var blob = Data()
        for k in tensors.keys.sorted() {
            let (shape, values) = tensors[k]!
            let begin = blob.count
            values.withUnsafeBytes { blob.append(contentsOf: $0) }
            header[k] = ["dtype": "F32", "shape": shape, "data_offsets": [begin, blob.count]]
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        var out = Data()
        var len = UInt64(json.count).littleEndian
        withUnsafeBytes(of: &len) { out.append(contentsOf: $0) }
        out.append(json); out.append(blob)
        try out.write(to: url)
    }
}
