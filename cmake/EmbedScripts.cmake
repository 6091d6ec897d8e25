# embed_lua_library(OUT file...) joins the Lua files, in order, into one Redis Functions
# library named `cartd` and writes generated/cartd/lua_library.cpp, which defines
# `cartd::scripts::library`. The first file holds helpers shared by the others; each
# other file registers its functions. CMake re-configures when a file changes.
function(embed_lua_library out_var)
  set(lua "#!lua name=cartd\n")
  foreach(file IN LISTS ARGN)
    file(READ ${file} content)
    string(APPEND lua "${content}\n")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  endforeach()
  set(body "// Generated from the Lua files under src/lua. Do not edit.\n#include <string_view>\nnamespace cartd::scripts {\nextern const std::string_view library;\nconst std::string_view library = R\"cartdlua(${lua})cartdlua\";\n}  // namespace cartd::scripts\n")
  set(out ${CMAKE_BINARY_DIR}/generated/cartd/lua_library.cpp)
  file(CONFIGURE OUTPUT ${out} CONTENT "${body}" @ONLY)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
