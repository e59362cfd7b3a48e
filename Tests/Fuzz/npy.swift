// libFuzzer target: the NPY reader (header and data) on untrusted bytes. Built by Scripts/fuzz.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    _ = try? NPY.decodeFloats(UnsafeRawBufferPointer(start: data, count: size), url: URL(fileURLWithPath: "fuzz.npy"))
    return 0
}
