// swift-tools-version:6.0
import PackageDescription

// Native libraries come from Debian packages installed by Scripts/bootstrap:
// libopenblas-dev (cblas.h), libarchive-dev, libfaiss-dev (static libfaiss.a, C++ API only).
let faissLinker: [LinkerSetting] = [
    .linkedLibrary("faiss"), .linkedLibrary("openblas"), .linkedLibrary("lapack"),
    .linkedLibrary("gomp"), .linkedLibrary("m"), .linkedLibrary("stdc++"),
]

let package = Package(
    name: "c3po",
    products: [
        .executable(name: "c3po-index", targets: ["c3po-index"]),
        .executable(name: "c3po-apply", targets: ["c3po-apply"]),
        .library(name: "C3POKit", targets: ["C3POCore", "C3POEmbedding", "C3POIndex", "C3POModel", "C3POMixing", "C3POReport", "C3POCommands"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // MARK: native dependencies
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS"),
        .systemLibrary(name: "CArchive", path: "Sources/CArchive"),
        // Our own matrix-product kernels (C with intrinsics, paths chosen at run time by cpuid).
        .target(name: "CKernels", path: "Sources/CKernels", linkerSettings: [.linkedLibrary("m")]),
        .target(
            name: "CFaissShim",
            path: "Sources/CFaissShim",
            cxxSettings: [.unsafeFlags(["-fexceptions"])],
            linkerSettings: faissLinker
        ),

        // MARK: the toolkit, one module per concern
        .target(name: "C3POCore", dependencies: ["CBLAS", "CKernels"]),
        .target(name: "C3POEmbedding", dependencies: ["C3POCore", "CBLAS"]),
        .target(name: "C3POModel", dependencies: ["C3POCore", "CBLAS"]),
        .target(name: "C3POIndex", dependencies: ["C3POCore", "C3POEmbedding", "CFaissShim", "CArchive"]),
        .target(name: "C3POMixing", dependencies: ["C3POCore", "C3POIndex", "C3POModel", "C3POEmbedding"]),
        .target(name: "C3POReport", dependencies: ["C3POCore", "C3POIndex", "C3POMixing"]),
        .target(
            name: "C3POCommands",
            dependencies: [
                "C3POCore", "C3POEmbedding", "C3POIndex", "C3POModel", "C3POMixing", "C3POReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),

        // MARK: command-line tools (thin: everything lives in C3POCommands)
        .executableTarget(name: "c3po-index", dependencies: ["C3POCommands"]),
        .executableTarget(name: "c3po-apply", dependencies: ["C3POCommands"]),

        // MARK: tests
        .testTarget(name: "C3POCoreTests", dependencies: ["C3POCore", "CBLAS", "CKernels"]),
        .testTarget(name: "C3POIndexTests", dependencies: ["C3POIndex", "C3POCore", "C3POEmbedding", "CArchive"]),
        .testTarget(name: "C3POEmbeddingTests", dependencies: ["C3POEmbedding", "C3POCore"]),
        .testTarget(name: "C3POModelTests", dependencies: ["C3POModel", "C3POCore"]),
        .testTarget(name: "C3POMixingTests", dependencies: ["C3POMixing", "C3POModel", "C3POIndex", "C3POCore"]),
        .testTarget(name: "C3POCommandsTests", dependencies: ["C3POCommands", "C3POCore", "C3POIndex"]),
        .testTarget(name: "C3POReportTests", dependencies: ["C3POReport", "C3POMixing", "C3POIndex", "C3POCore", "C3POEmbedding"]),
    ],
    swiftLanguageModes: [.v5],
    cxxLanguageStandard: .cxx17
)
