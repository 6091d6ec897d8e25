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

# embed_web_files(OUT file...) writes generated/cartd/web_files.cpp, which defines
# `cartd::web::files`: each file's name (relative to web/) and content, for the
# storefront that cartd serves from its own binary.
function(embed_web_files out_var)
  set(entries "")
  foreach(file IN LISTS ARGN)
    get_filename_component(name ${file} NAME)
    file(READ ${file} content)
    string(APPEND entries "  {\"${name}\", R\"cartdweb(${content})cartdweb\"},\n")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${file})
  endforeach()
  set(body "// Generated from web/. Do not edit.\n#include \"http/static_files.hpp\"\nnamespace cartd::web {\nconst std::vector<StaticFile> files = {\n${entries}};\n}  // namespace cartd::web\n")
  set(out ${CMAKE_BINARY_DIR}/generated/cartd/web_files.cpp)
  file(CONFIGURE OUTPUT ${out} CONTENT "${body}" @ONLY)
  set(${out_var} ${out} PARENT_SCOPE)
endfunction()
