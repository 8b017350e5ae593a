# Sourced by the scripts that build: `swift build ... 2>&1 | quiet` keeps only
# what a person should read (warnings and errors of Berth's own code): not the
# progress lines, glibc's notes on static linking (getaddrinfo, dlopen, mktemp
# in Foundation), nor a dependency's note on its CMake files.
quiet() {
  grep -vE '^(\[[0-9]+/[0-9]+\]|Building|Compiling|Write|Planning|Linking|Build complete|Build of product)' \
    | grep -vE "statically linked applications requires at runtime|is dangerous, better use" \
    | grep -vE "which are unhandled; explicitly declare them as resources|/checkouts/[^ ]*/CMakeLists.txt$" || true
}
