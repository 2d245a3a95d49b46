# Shared compile settings and small helpers so every component builds the same way.

add_library(ccmail_build_flags INTERFACE)
target_compile_options(ccmail_build_flags INTERFACE -Wall -Wextra -Wshadow -Wnon-virtual-dtor -Wpointer-arith)
# GCC 12 reports -Wrestrict false positives inside libstdc++ for ordinary std::string
# concatenation at -O2/-O3 (GCC bug 105329, fixed in 13); with -Werror they stop the build.
if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
  target_compile_options(ccmail_build_flags INTERFACE -Wno-restrict)
endif()
if(CCMAIL_WERROR)
  target_compile_options(ccmail_build_flags INTERFACE -Werror)
endif()
target_compile_definitions(ccmail_build_flags INTERFACE _GNU_SOURCE)
if(CCMAIL_SANITIZE)
  target_compile_options(ccmail_build_flags INTERFACE
    -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  target_link_options(ccmail_build_flags INTERFACE -fsanitize=address,undefined)
endif()

# ccmail_library(<name> SOURCES ... [DEPS ...])
# A component library whose public headers live in <folder>/include.
function(ccmail_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(${name} STATIC ${ARG_SOURCES})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
                                     PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${name} PUBLIC ccmail_build_flags ${ARG_DEPS} PRIVATE ${ARG_PRIVATE_DEPS})
  set_target_properties(${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
endfunction()

# ccmail_program(<name> SOURCES ... DEPS ...)   an installed command or daemon (thin main()).
function(ccmail_program name)
  cmake_parse_arguments(ARG "" "DESTINATION" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ccmail_build_flags ${ARG_DEPS})
  if(NOT ARG_DESTINATION)
    set(ARG_DESTINATION ${CMAKE_INSTALL_BINDIR})
  endif()
  install(TARGETS ${name} RUNTIME DESTINATION ${ARG_DESTINATION})
endfunction()

# ccmail_gtest(<name> SOURCES ... DEPS ... [LABELS ...] [TIMEOUT s])
# Every test links tests/testing (ccmail_testing: TempDir, Slurp, WriteFile).
# One GoogleTest binary registered with CTest as a single test (fork/kill tests
# inside must not be split per case, they share temporary directories).
function(ccmail_gtest name)
  cmake_parse_arguments(ARG "" "TIMEOUT" "SOURCES;DEPS;LABELS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ccmail_build_flags ${ARG_DEPS} ccmail_testing GTest::gmock GTest::gtest GTest::gtest_main)
  add_test(NAME ${name} COMMAND ${name} --gtest_color=no)
  if(NOT ARG_LABELS)
    set(ARG_LABELS unit)
  endif()
  if(NOT ARG_TIMEOUT)
    set(ARG_TIMEOUT 300)
  endif()
  set_tests_properties(${name} PROPERTIES LABELS "${ARG_LABELS}" TIMEOUT ${ARG_TIMEOUT}
    ENVIRONMENT "CCMAIL_SOURCE_DIR=${PROJECT_SOURCE_DIR};CCMAIL_BINARY_DIR=${PROJECT_BINARY_DIR}")
endfunction()
