// swift-tools-version:6.0
import PackageDescription

// The modules inside the `berth` and `berth-ipam` processes. Measured in
// scripts/bench.py (see docs/benchmarks.md): linked statically, a plugin
// process starts in about 1.4 ms instead of 4 ms (no dynamic loader, no
// libstdc++ relocations); without the implicit _StringProcessing import
// (String.contains(String) and regexes), 1.2 MB of regex code stays out of
// the binary and a process's peak memory drops by about 450 KB.
// Functions get sections of their own, and the linker (gold) puts the ones
// an ADD, CHECK, DEL and VERSION run next to each other
// (Sources/berth/hot-sections.txt, made by scripts/hot-sections.sh from
// callgrind traces): the pages a plugin process touches, and so its peak
// memory, drop by about 0.9 MB.
let plugin: [SwiftSetting] = [.unsafeFlags(["-Xfrontend", "-disable-implicit-string-processing-module-import",
                                            "-Xfrontend", "-function-sections"])]
let staticExecutable: [LinkerSetting] = [.unsafeFlags([
    "-static-executable",
    "-Xlinker", "--section-ordering-file=\(Context.packageDirectory)/Sources/berth/hot-sections.txt",
])]

let package = Package(
    name: "Berth",
    products: [
        .executable(name: "berth", targets: ["berth"]),
        .executable(name: "berth-ipam", targets: ["berth-ipam"]),
        .executable(name: "berthctl", targets: ["berthctl"]),
        .library(name: "BerthLab", targets: ["BerthLab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
    ],
    targets: [
        // libnl-3 route library, found through pkg-config.
        .systemLibrary(
            name: "CLibNL",
            pkgConfig: "libnl-route-3.0",
            providers: [.apt(["libnl-3-dev", "libnl-route-3-dev"])]
        ),
        // libnftables' header only: the library is loaded with dlopen when a rule
        // is needed, so that plugin runs without ipMasq or macspoofchk do not pay
        // for loading it and its five dependencies (about 3 ms per exec, measured).
        .systemLibrary(
            name: "CNFTables",
            providers: [.apt(["libnftables-dev"])]
        ),
        // The few syscalls Swift cannot make (setns, ioctl, memfd_create).
        .target(name: "CBerthSys"),
        // Pure: JSON, CNI types, versions, errors, config, results. No side effects.
        .target(name: "BerthCNI", swiftSettings: plugin),
        // Files, namespaces and child processes behind typed wrappers.
        .target(name: "BerthSystem", dependencies: ["CBerthSys"], swiftSettings: plugin),
        // The only module that imports libnl.
        .target(name: "BerthNetlink", dependencies: ["CLibNL", "BerthCNI", "BerthSystem"], swiftSettings: plugin),
        // The only module that imports libnftables: masquerade and MAC spoof rules (and iptables for masquerade).
        .target(name: "BerthFirewall", dependencies: ["CNFTables", "BerthCNI", "BerthSystem"], swiftSettings: plugin),
        // Berth's IPAM: range arithmetic and config (pure), the allocation store, the operations.
        .target(name: "BerthIPAM", dependencies: ["BerthCNI", "BerthSystem"], swiftSettings: plugin),
        // The namespace runtime: containers, cgroups, their state.
        .target(name: "BerthRuntime", dependencies: ["BerthCNI", "BerthSystem", "CBerthSys"]),
        // Test labs: topologies of namespaces and networks, for berthctl lab and Swift test suites.
        .target(name: "BerthLab", dependencies: ["BerthCNI", "BerthRuntime", "BerthSystem", "BerthNetlink", "CBerthSys",
                                                 .product(name: "Yams", package: "Yams")]),
        // The bridge plugin: ADD, DEL, CHECK, GC, STATUS orchestration.
        .target(name: "BerthPlugin", dependencies: ["BerthCNI", "BerthSystem", "BerthNetlink", "BerthIPAM", "BerthFirewall"],
                swiftSettings: plugin),
        // Static executables: tests find them in the build directory and must not
        // depend on them (a test bundle would inherit -static-executable).
        .executableTarget(name: "berth", dependencies: ["BerthPlugin"], swiftSettings: plugin, linkerSettings: staticExecutable),
        .executableTarget(name: "berth-ipam", dependencies: ["BerthIPAM"], swiftSettings: plugin, linkerSettings: staticExecutable),
        // The human CLI.
        .executableTarget(name: "berthctl", dependencies: [
            "BerthCNI", "BerthIPAM", "BerthRuntime", "BerthLab",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        .testTarget(name: "BerthCNITests", dependencies: ["BerthCNI", "BerthIPAM", "BerthPlugin", "BerthFirewall", "BerthNetlink"]),
        .testTarget(name: "BerthIPAMTests", dependencies: ["BerthCNI", "BerthIPAM", "berthctl"]),
        .testTarget(name: "BerthRuntimeTests", dependencies: ["BerthRuntime", "BerthLab", "berthctl"]),
        .testTarget(
            name: "BerthEndToEndTests",
            dependencies: ["BerthCNI", "BerthSystem", "berthctl"],
            exclude: ["Corpus"]  // read by path (#filePath), not a resource
        ),
    ]
)
