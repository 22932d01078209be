# Registers package_using (tests/package/check_using.sh): the projects of
# docs/using.md built and run against a fresh install, one per language
# whose toolchain is here. Included from tests/CMakeLists.txt.
#
# The find calls below share their cache entries with bindings/rust,
# bindings/java and bindings/go, so the test uses the tools they use. Those
# folders are configured after tests/, so whether the Java and Go bindings
# are built is read when the build system is generated ($<TARGET_EXISTS>).
find_program(S2FT_PKG_CONFIG NAMES pkg-config pkgconf)
find_program(CARGO cargo)
find_package(Java COMPONENTS Development QUIET)
find_program(S2FT_GO_EXECUTABLE go)

set(present cpp)
set(absent "")
if(S2FT_PKG_CONFIG)
  list(PREPEND present c)
else()
  list(APPEND absent c)
endif()
if(CARGO)
  list(APPEND present rust)
else()
  list(APPEND absent rust)
endif()
list(JOIN present " " present)
list(JOIN absent " " absent)

add_test(NAME package_using
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/check_using.sh ${PROJECT_BINARY_DIR} ${CMAKE_CURRENT_BINARY_DIR}/package-using
          "${present} $<$<TARGET_EXISTS:s2ft_java>:java> $<$<TARGET_EXISTS:s2ft_go>:go>"
          "${absent} $<$<NOT:$<TARGET_EXISTS:s2ft_java>>:java> $<$<NOT:$<TARGET_EXISTS:s2ft_go>>:go>")
set_tests_properties(package_using PROPERTIES LABELS package TIMEOUT 600
  PASS_REGULAR_EXPRESSION "using ok"
  # cmake --install writes the build tree's install_manifest.txt.
  RESOURCE_LOCK s2ft_install
  ENVIRONMENT "CC=${CMAKE_C_COMPILER};CXX=${CMAKE_CXX_COMPILER};PKG_CONFIG=${S2FT_PKG_CONFIG};CARGO=${CARGO};JAVAC=${Java_JAVAC_EXECUTABLE};JAVA=${Java_JAVA_EXECUTABLE};GO=${S2FT_GO_EXECUTABLE}")

# docs/using.md shows examples/using verbatim.
add_test(NAME docs_using_projects COMMAND ${CMAKE_CURRENT_LIST_DIR}/check_using_docs.sh ${PROJECT_SOURCE_DIR})
set_tests_properties(docs_using_projects PROPERTIES LABELS "unit;package")
