# The inputs of the serving examples' CTest runs (examples/rust, examples/java,
# examples/go): a base checkpoint folder and two adapters made for it, by the
# test `example_inputs` (fixture s2ft_example_inputs; example_inputs.sh):
# stories260K-hf of the test data when present, else a small random
# checkpoint. Included by each binding's CMakeLists.txt before it registers
# its example test; an example test runs as
#   ${S2FT_RUN_EXAMPLE} COMMAND...
# (run_example.sh appends FIRST SECOND BASE to the command) with
#   FIXTURES_REQUIRED s2ft_example_inputs.
set(S2FT_EXAMPLE_INPUTS ${PROJECT_BINARY_DIR}/example-inputs)
set(S2FT_RUN_EXAMPLE sh ${CMAKE_CURRENT_LIST_DIR}/run_example.sh ${S2FT_EXAMPLE_INPUTS})
include_guard(GLOBAL)

# examples/c: making two adapters for a base with the C API, and a small base.
add_executable(s2ft-make-adapters ${PROJECT_SOURCE_DIR}/examples/c/make_adapters.c)
target_link_libraries(s2ft-make-adapters PRIVATE s2ft)
add_executable(s2ft-tiny-checkpoint ${PROJECT_SOURCE_DIR}/examples/c/tiny_checkpoint.c)
foreach(t s2ft-make-adapters s2ft-tiny-checkpoint)
  set_target_properties(${t} PROPERTIES C_STANDARD 99 C_EXTENSIONS OFF
    RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/examples/c)
  target_compile_options(${t} PRIVATE -Wall -Wextra)
endforeach()

add_test(NAME example_inputs
  COMMAND sh ${CMAKE_CURRENT_LIST_DIR}/example_inputs.sh ${S2FT_EXAMPLE_INPUTS}
          $<TARGET_FILE:s2ft-tiny-checkpoint> $<TARGET_FILE:s2ft-make-adapters> ${PROJECT_SOURCE_DIR}/../shared/data)
set_tests_properties(example_inputs PROPERTIES LABELS bindings FIXTURES_SETUP s2ft_example_inputs)
