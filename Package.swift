// swift-tools-version:6.0
import PackageDescription

// Release tuning of the plugin executables (fully static, no implicit
// _StringProcessing, function sections in a measured order) is done by
// scripts/build.sh, not here: SwiftPM refuses a package with unsafe flags as
// a versioned dependency, and BerthLab is a library others depend on.

let package = Package(
    name: "Berth",
    products: [
        .executable(name: "berth", targets: ["berth"]),
        .executable(name: "berth-ipam", targets: ["berth-ipam"]),
        .executable(name: "berthctl", targets: ["berthctl"]),
        .executable(name: "berth-agent", targets: ["berth-agent"]),
        .library(name: "BerthLab", targets: ["BerthLab"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.0"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
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
        // The few system calls Swift cannot make (setns, ioctl, memfd_create, sigaction).
        .target(name: "CBerthSys"),
        // What runs in a child between fork/clone and exec (containers, plugins,
        // netns exec): C only, as runc's nsexec, since no Swift may run there.
        .target(name: "CBerthLaunch"),
        // X25519 for WireGuard keys, from the system's OpenSSL (libcrypto):
        // swift-crypto's copy of BoringSSL, beside swift-nio-ssl's, cost every build a minute.
        .target(name: "CBerthCrypto", linkerSettings: [.linkedLibrary("crypto")]),
        // Pure: JSON values, parsed and printed (CNI's needs: unknown fields kept, numbers exact).
        .target(name: "BerthJSON"),
        // Pure: network values every layer shares: IP addresses and prefixes,
        // MACs, hex, SHA-256 and the names derived with it.
        .target(name: "BerthNet"),
        // Pure: CNI types, versions, errors, environment, network config, results. No side effects.
        .target(name: "BerthCNI", dependencies: ["BerthJSON", "BerthNet"]),
        // The CNI plugin protocol from both sides: being a plugin (PluginDriver,
        // pure, and the process around it) and running one (PluginExecutor:
        // delegated IPAM, plugin chains).
        .target(name: "BerthCNIPlugin", dependencies: ["BerthJSON", "BerthCNI", "BerthSystem", "CBerthSys"]),
        // Files, namespaces and child processes behind typed wrappers.
        .target(name: "BerthSystem", dependencies: ["CBerthSys", "CBerthLaunch"]),
        // The only module that imports libnl.
        .target(name: "BerthNetlink", dependencies: ["CLibNL", "BerthNet", "BerthSystem"]),
        // The only module that imports libnftables: masquerade and MAC spoof rules (and iptables for masquerade).
        .target(name: "BerthFirewall", dependencies: ["CNFTables", "BerthJSON", "BerthNet", "BerthCNI", "BerthSystem", "BerthPolicy"]),
        // Berth's IPAM: range arithmetic and config (pure), the allocation store, the operations.
        .target(name: "BerthIPAM", dependencies: ["BerthNet", "BerthJSON", "BerthCNI", "BerthCNIPlugin", "BerthSystem"]),
        // A CNI client as libcni is one: network lists, plugin chains with cached
        // results, attachments of named namespaces (berthctl attach, labs, the runtime).
        .target(name: "BerthCNIClient", dependencies: ["BerthNet", "BerthJSON", "BerthCNI", "BerthCNIPlugin", "BerthSystem", "CBerthLaunch"]),
        // The namespace runtime: containers, cgroups, their state.
        .target(name: "BerthRuntime", dependencies: ["BerthJSON", "BerthCNI", "BerthCNIClient", "BerthSystem", "CBerthLaunch", "CBerthSys"]),
        // YAML or JSON files as JSON values, each key path's line kept (lab files, policies).
        .target(name: "BerthYAML", dependencies: ["BerthJSON", .product(name: "Yams", package: "Yams")]),
        // Pure: network policy (Kubernetes NetworkPolicy semantics): documents
        // read and checked, selectors, and what a policy set allows.
        .target(name: "BerthPolicy", dependencies: ["BerthNet", "BerthJSON", "BerthCNI"]),
        // Policy files as people write them (YAML or JSON): kept apart from
        // BerthPolicy, so that the plugin carries no YAML parser.
        .target(name: "BerthPolicyFiles", dependencies: ["BerthJSON", "BerthPolicy", "BerthYAML"]),
        // The node's endpoints (a pod's attachment, identity and addresses) on
        // disk: written by the plugin, read for policy.
        .target(name: "BerthEndpoints", dependencies: ["BerthCNI", "BerthNet", "BerthJSON", "BerthSystem"]),
        // Names on a network: what a name may be and where it comes from (pure), and
        // the network's DNS server (Debian's dnsmasq) kept in step with its attachments.
        .target(name: "BerthNames", dependencies: ["BerthCNI", "BerthNet", "BerthJSON", "BerthSystem", "BerthFirewall"]),
        // Policy on a node: what is in force, applied to the kernel, kept in step with pods.
        .target(name: "BerthEnforcement", dependencies: ["BerthEndpoints", "BerthFirewall", "BerthJSON", "BerthNet", "BerthPolicy", "BerthSystem"]),
        // Test labs: topologies of namespaces and networks, for berthctl lab and Swift test suites.
        .target(name: "BerthLab", dependencies: ["BerthNet", "BerthJSON", "BerthCNI", "BerthCNIClient", "BerthRuntime", "BerthSystem", "BerthNetlink", "BerthPlugin", "CBerthSys", "BerthYAML", "BerthEndpoints", "BerthEnforcement"]),
        // The bridge plugin: ADD, DEL, CHECK, GC, STATUS orchestration.
        .target(name: "BerthPlugin", dependencies: ["BerthNet", "BerthJSON", "BerthCNI", "BerthCNIPlugin", "BerthEndpoints", "BerthNames", "BerthEnforcement", "BerthSystem", "BerthNetlink", "BerthIPAM", "BerthFirewall"]),
        // The plugin executables: tests find them in the build directory.
        .executableTarget(name: "berth", dependencies: ["BerthPlugin"]),
        .executableTarget(name: "berth-ipam", dependencies: ["BerthIPAM"]),
        // Clusters: etcd's v3 API (through its JSON gateway, plain or TLS, as an etcd user), the cluster
        // model, the node agent and the routes, VXLAN and FDB it programs.
        .target(name: "BerthCluster", dependencies: [
            "BerthNet", "BerthJSON", "BerthCNI", "BerthSystem", "BerthNetlink", "BerthIPAM",
            "BerthPolicy", "BerthEndpoints", "BerthEnforcement", "BerthFirewall", "BerthNames", "CBerthCrypto",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOSSL", package: "swift-nio-ssl"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
        ]),
        // Test doubles of the cluster's seams: an in-memory store, a recording backend.
        .target(name: "BerthClusterFakes", dependencies: ["BerthNet", "BerthCluster"]),
        // The node agent (and `init`, `show`, `nodes` for people).
        .executableTarget(name: "berth-agent", dependencies: [
            "BerthNet", "BerthCluster", "BerthJSON", "BerthCNI", "BerthPolicy", "BerthPolicyFiles",
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // The human CLI.
        .executableTarget(name: "berthctl", dependencies: [
            "BerthNet", "BerthJSON", "BerthCNI", "BerthSystem", "BerthIPAM", "BerthCNIClient", "BerthRuntime", "BerthLab", "CBerthSys",
            "BerthPolicy", "BerthPolicyFiles", "BerthEndpoints", "BerthEnforcement", "BerthFirewall", "BerthNames",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),
        // Unit tests, one target per module: pure logic, no root.
        .testTarget(name: "BerthNetTests", dependencies: ["BerthNet"]),
        .testTarget(name: "BerthJSONTests", dependencies: ["BerthJSON"]),
        .testTarget(name: "BerthSystemTests", dependencies: ["BerthSystem", "CBerthSys"]),
        .testTarget(name: "BerthCNITests", dependencies: ["BerthCNI", "BerthJSON", "BerthNet"]),
        .testTarget(name: "BerthNetlinkTests", dependencies: ["BerthNetlink", "BerthNet", "BerthSystem"]),
        .testTarget(name: "BerthFirewallTests", dependencies: ["BerthFirewall", "BerthCNI", "BerthNet", "BerthPolicy", "BerthPolicyFiles"]),
        .testTarget(name: "BerthIPAMTests", dependencies: ["BerthIPAM", "BerthCNI", "BerthJSON", "BerthNet", "berth-ipam", "berthctl"]),
        .testTarget(name: "BerthCNIPluginTests", dependencies: ["BerthCNIPlugin", "BerthCNI", "BerthJSON", "BerthSystem"]),
        .testTarget(name: "BerthPluginTests", dependencies: ["BerthPlugin", "BerthCNI", "BerthJSON", "BerthNet", "BerthNetlink", "BerthIPAM"]),
        .testTarget(name: "BerthCNIClientTests", dependencies: ["BerthCNIClient"]),
        .testTarget(name: "BerthRuntimeTests", dependencies: ["BerthRuntime", "BerthTestSupport"]),
        .testTarget(name: "BerthLabTests", dependencies: ["BerthLab", "BerthCNI", "BerthJSON", "BerthNet", "BerthTestSupport"]),
        .testTarget(name: "BerthNamesTests", dependencies: ["BerthNames", "BerthCNI", "BerthNet", "BerthJSON"]),
        .testTarget(name: "BerthEndpointsTests", dependencies: ["BerthEndpoints", "BerthCNI", "BerthNet"]),
        .testTarget(name: "BerthPolicyTests", dependencies: ["BerthPolicy", "BerthPolicyFiles", "BerthNet", "BerthJSON"]),
        .testTarget(name: "BerthClusterTests", dependencies: ["BerthCluster", "BerthClusterFakes", "BerthJSON", "BerthNet", "BerthCNI", "BerthIPAM", "BerthPolicy", "BerthEndpoints"]),
        // What the end-to-end targets share: running the built executables,
        // private networks and namespaces of a test, waiting without timing.
        .target(name: "BerthTestSupport", dependencies: ["BerthCNI", "BerthJSON", "BerthSystem", "BerthNet"], path: "Tests/BerthTestSupport"),
        // End to end, by what a user does: real kernels, processes and servers (root).
        .testTarget(
            name: "PluginEndToEndTests",
            dependencies: ["BerthTestSupport", "BerthJSON", "BerthCNI", "BerthSystem", "BerthNet", "BerthFirewall", "BerthPolicy", "BerthPolicyFiles", "BerthEnforcement", "berthctl"],
            exclude: ["Corpus"]  // read by path (#filePath), not a resource
        ),
        .testTarget(name: "ClusterEndToEndTests", dependencies: ["BerthTestSupport", "BerthJSON", "BerthNet", "berthctl", "berth-agent"]),
        .testTarget(name: "RuntimeEndToEndTests", dependencies: ["BerthTestSupport", "BerthSystem", "BerthRuntime", "BerthCNIClient", "berthctl"]),
        .testTarget(name: "LabEndToEndTests", dependencies: ["BerthTestSupport", "BerthLab", "BerthCNI", "BerthJSON", "BerthNet", "BerthSystem", "berthctl"]),
    ]
)
