import C3POCore
import XCTest

/// The choice of OpenBLAS core (BLASCore.decide): generic cores are corrected on CPUs that have
/// AVX2/AVX-512, a user's OPENBLAS_CORETYPE and the opt-out are honoured, and the second start
/// never asks for a third.
final class BLASCoreTests: XCTestCase {
    let avx512 = BLASCore.CPU(avx2: true, avx512: true)
    let avx2 = BLASCore.CPU(avx2: true, avx512: false)
    let old = BLASCore.CPU(avx2: false, avx512: false)

    func testGenericCoresAreCorrectedToWhatTheCPUOffers() {
        XCTAssertEqual(BLASCore.decide(coreName: "Prescott", cpu: avx512, environment: [:]), .rerun(coreType: "SkylakeX"))
        XCTAssertEqual(BLASCore.decide(coreName: "Haswell", cpu: avx512, environment: [:]), .rerun(coreType: "SkylakeX"))
        XCTAssertEqual(BLASCore.decide(coreName: "Prescott", cpu: avx2, environment: [:]), .rerun(coreType: "Haswell"))
        XCTAssertEqual(BLASCore.decide(coreName: "Nehalem", cpu: avx2, environment: [:]), .rerun(coreType: "Haswell"))
    }

    func testSuitableCoresAndOldCPUsAreKept() {
        for (core, cpu) in [("SkylakeX", avx512), ("Cooperlake", avx512), ("SAPPHIRERAPIDS", avx512), ("Haswell", avx2), ("Zen", avx2), ("Prescott", old)] {
            guard case .keep = BLASCore.decide(coreName: core, cpu: cpu, environment: [:]) else { return XCTFail("\(core) should be kept") }
        }
    }

    func testTheUserAndTheOptOutWinAndTheSecondStartStops() {
        XCTAssertEqual(BLASCore.decide(coreName: "Prescott", cpu: avx512, environment: ["OPENBLAS_CORETYPE": "Prescott"]),
                       .keep("OPENBLAS_CORETYPE=Prescott set by the user"))
        XCTAssertEqual(BLASCore.decide(coreName: "Prescott", cpu: avx512, environment: ["C3PO_BLAS_AUTOCORE": "0"]), .keep("C3PO_BLAS_AUTOCORE=0"))
        // The second start has our own OPENBLAS_CORETYPE and the marker: it keeps what it got.
        XCTAssertEqual(BLASCore.decide(coreName: "Prescott", cpu: avx512,
                                       environment: ["OPENBLAS_CORETYPE": "SkylakeX", BLASCore.rerunMarker: "Prescott"]), .keep("already corrected"))
    }

    func testTheProductCheckPassesOnTheLoadedCore() {
        XCTAssertTrue(BLASCore.productIsRight(), "sgemm on core \(BLASCore.coreName) disagrees with a naive product")
        XCTAssertTrue(BLASCore.summary.contains("kernels \(KernelPath.active)"))
    }
}
