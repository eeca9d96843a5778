# Copy-offload functional tests (tests/functional/copy_*.sh), included from this
# directory's CMakeLists.txt. They need rodd, rodctl, rodcp and rodtest-copy.
if(NOT TARGET rodcp)
  return()
endif()
add_executable(rodtest-copy ${CMAKE_CURRENT_LIST_DIR}/copy_client.c)
target_link_libraries(rodtest-copy PkgConfig::ISCSI)

file(GLOB ROD_COPY_TESTS CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/copy_*.sh)
foreach(script ${ROD_COPY_TESTS})
  get_filename_component(name ${script} NAME_WE)
  add_test(NAME functional/${name} COMMAND bash ${script})
  set_tests_properties(functional/${name} PROPERTIES
    LABELS "functional;asan"
    TIMEOUT 300
    ENVIRONMENT "RODD=$<TARGET_FILE:rodd>;RODCTL=$<TARGET_FILE:rodctl>;RODCP=$<TARGET_FILE:rodcp>;RODTEST_COPY=$<TARGET_FILE:rodtest-copy>;RODTEST_ISCSI=$<TARGET_FILE:rodtest-iscsi>")
endforeach()
